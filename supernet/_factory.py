"""The supernet of a space, chosen by the space's name (a plain mapping, filled by nobody at import time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from supernet.efficientnet import EfficientNetSupernet
from supernet.nasnet import NASNetSupernet
from supernet.shufflenet import ShuffleNetSupernet

if TYPE_CHECKING:
    from search_spaces import SearchSpace
    from supernet._base import Supernet

__all__ = ["build_supernet", "supported_spaces"]

_SUPERNETS: dict[str, type[Supernet]] = {
    "shufflenet": ShuffleNetSupernet,
    "efficientnet": EfficientNetSupernet,
    "nasnet": NASNetSupernet,
}


def supported_spaces() -> list[str]:
    """Names of the spaces that have a supernet."""
    return list(_SUPERNETS)


def build_supernet(space: SearchSpace, *, seed: int | None = 0, **options: Any) -> Supernet:
    """The supernet of ``space``, its weights initialised from ``seed``.

    ``options`` are the supernet class's ``OPTIONS`` (e.g. ``kernel_transform=True`` for efficientnet); an
    unknown one is a ValueError naming the allowed ones.

    The initialisation draws from a forked copy of torch's default generator seeded with ``seed``, so the
    same seed gives the same weights and the caller's random state is left as it was. ``seed=None`` draws
    from the caller's generator instead.
    """
    if space.name not in _SUPERNETS:
        raise ValueError(f"no supernet for space {space.name!r}; allowed: {', '.join(_SUPERNETS)}")
    cls = _SUPERNETS[space.name]
    unknown = sorted(set(options) - cls.OPTIONS)
    if unknown:
        allowed = ", ".join(sorted(cls.OPTIONS)) or "none"
        raise ValueError(f"unknown option(s) {unknown} for the supernet of space {space.name!r}; allowed: {allowed}")
    if seed is None:
        return cls(space, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(space, **options)
