"""Named built-in run configurations: ``nas run --config NAME`` when no file of that name exists.

Each is a partial configuration merged over the built-in default, as a user's YAML file would be.

- ``strokes``: the generated ``strokes`` task (:mod:`nas.core.data.synthetic`), on which architectures of the
  small ShuffleNet layout differ by more than their seed noise, so that ``nas rank`` can tell whether the
  supernet's order is right. 3,500 training images (2.8x digits), so the supernet trains 20 epochs instead of
  60: the same number of steps (about 1,100) and about the same time as the default run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NAMED_CONFIGS"]

NAMED_CONFIGS: Mapping[str, Mapping[str, Any]] = {
    "strokes": {
        "name": "strokes",
        "data": {"dataset": "strokes"},
        "supernet": {"epochs": 20},
    },
}
