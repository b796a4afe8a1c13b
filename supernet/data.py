"""The project's one data-loader factory: batches of a map-style dataset in a reproducible order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["make_loader"]


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader[Any]:
    """A single-process loader whose order depends only on ``seed`` (not on torch's global generator).

    Each call builds a fresh generator, so two loaders made with the same arguments yield the same
    batches; iterating one loader twice gives two different (but reproducible) orders. No worker processes:
    the order of a given seed is the same in every process, which resuming a training run depends on. A
    ``TensorDataset`` is indexed a whole batch at a time, which is much faster than sample by sample.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, TensorDataset):
        base: RandomSampler | SequentialSampler = (
            RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        )
        batches = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=0, generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=0,
        generator=generator,
    )
