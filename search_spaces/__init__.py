"""What can be built: search spaces, their architectures, presets and static model builders.

No training and no timing here.
"""

from search_spaces._arch import Architecture, Scalar
from search_spaces._blocks import NETWORK_INPUT, LatencyBlock, run_blocks
from search_spaces._registry import get_space, get_space_class, list_spaces, preset
from search_spaces._space import Preset, SearchSpace, SpaceConfig
from search_spaces.validation import format_validation_error

__all__ = [
    "NETWORK_INPUT",
    "Architecture",
    "LatencyBlock",
    "Preset",
    "Scalar",
    "SearchSpace",
    "SpaceConfig",
    "format_validation_error",
    "get_space",
    "get_space_class",
    "list_spaces",
    "preset",
    "run_blocks",
]
