"""The registry of spaces: names mapped to import paths, imported only when asked for."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_spaces._arch import Architecture
    from search_spaces._space import SearchSpace, SpaceConfig

__all__ = ["get_space", "get_space_class", "list_spaces", "preset"]

# name -> "module:Class". A plain constant: nothing registers itself at import time.
_SPACES: Mapping[str, str] = {
    "shufflenet": "search_spaces.shufflenet:ShuffleNetSpace",
    "nasnet": "search_spaces.nasnet:NASNetSpace",
    "efficientnet": "search_spaces.efficientnet:EfficientNetSpace",
}


def list_spaces() -> list[str]:
    return list(_SPACES)


def get_space_class(name: str) -> type[SearchSpace]:
    if name not in _SPACES:
        raise ValueError(f"unknown space {name!r}; allowed: {', '.join(_SPACES)}")
    module_name, class_name = _SPACES[name].split(":")
    cls: type[SearchSpace] = getattr(importlib.import_module(module_name), class_name)
    return cls


def get_space(name: str, config: SpaceConfig | Mapping[str, Any] | None = None) -> SearchSpace:
    """An instance of space ``name``; ``config`` may name a ``layout`` and override its keys."""
    return get_space_class(name)(config)


def preset(space: str, name: str) -> tuple[SearchSpace, Architecture]:
    return get_space_class(space).preset(name)
