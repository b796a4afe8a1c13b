"""The run's data at an architecture's own input resolution, resized once per resolution.

A space that searches resolution (``efficientnet``) scores every candidate at ``space.resolution(arch)``:
BN recalibration, validation accuracy, counts, latency and the ONNX export all see that input size. The
splits are resized once per resolution (with :func:`nas.core.data.datasets.resize_images`, the resize the
supernet applies inside its ``forward``) and kept, not resized per candidate.
"""

from __future__ import annotations

import dataclasses

from torch.utils.data import TensorDataset

from nas.core.data.datasets import DataBundle, resize_images

__all__ = ["ResolutionCache", "at_resolution"]


def _resized(split: TensorDataset, size: int) -> TensorDataset:
    images, labels = split.tensors
    return TensorDataset(resize_images(images, size), labels)


def at_resolution(data: DataBundle, size: int) -> DataBundle:
    """``data`` with every split resized to ``size`` x ``size`` (``data`` itself when it has that size)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"resolution must be a positive integer, got {size!r}")
    if size == data.input_size:
        return data
    return dataclasses.replace(
        data,
        train=_resized(data.train, size),
        val=_resized(data.val, size),
        test=_resized(data.test, size),
        input_size=size,
    )


class ResolutionCache:
    """One :class:`DataBundle` per resolution asked for, made on first use and kept."""

    def __init__(self, data: DataBundle) -> None:
        self.data = data
        self._bundles: dict[int, DataBundle] = {data.input_size: data}

    def __call__(self, size: int) -> DataBundle:
        if size not in self._bundles:
            self._bundles[size] = at_resolution(self.data, size)
        return self._bundles[size]

    def __len__(self) -> int:
        return len(self._bundles)
