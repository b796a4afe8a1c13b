"""Fixtures of the supernet tests: a tiny ShuffleNet space and digits at their native 8x8."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from search_spaces import get_space
from search_spaces.shufflenet import ShuffleNetSpace

# Three choice layers (4**3 = 64 paths) on 8x8 inputs: a training epoch takes milliseconds.
TINY = {
    "layout": "small",
    "input_size": 8,
    "stem_channels": 8,
    "stage_channels": (16, 32),
    "stage_repeats": (1, 2),
    "head_channels": 32,
    "dropout": 0.2,
}


@pytest.fixture
def tiny_space() -> ShuffleNetSpace:
    space = get_space("shufflenet", TINY)
    assert isinstance(space, ShuffleNetSpace)
    return space


@pytest.fixture
def small_space() -> ShuffleNetSpace:
    space = get_space("shufflenet", {"layout": "small"})
    assert isinstance(space, ShuffleNetSpace)
    return space


def digits_8x8(n: int) -> TensorDataset:
    """The first ``n`` digits images, 1x8x8, scaled to roughly zero mean and unit variance."""
    data = load_digits()
    x = torch.tensor(data.images[:n], dtype=torch.float32).unsqueeze(1)
    x = (x - 4.9) / 6.0
    y = torch.tensor(data.target[:n], dtype=torch.long)
    return TensorDataset(x, y)


@pytest.fixture
def digits96() -> TensorDataset:
    return digits_8x8(96)


@pytest.fixture
def digits() -> Callable[[int], TensorDataset]:
    return digits_8x8
