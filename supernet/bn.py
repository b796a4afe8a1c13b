"""Batch-norm recalibration of an extracted subnet (SPOS, Guo et al. 2020, section 3.3).

The running statistics a subnet inherits from the supernet were accumulated over many different paths, so
they do not describe the inputs this particular path sees. Before a subnet is scored, its statistics are
recomputed: reset, cumulative averaging (``momentum=None``), a few batches of *training* data with the batch
norms in train mode and no gradients, then eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["batch_norm_layers", "recalibrate_bn"]


def batch_norm_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[Tensor | Sequence[Tensor]],
    num_batches: int | None,
    *,
    device: torch.device | str | None = None,
) -> int:
    """Recompute the running statistics of every batch norm of ``model`` from ``num_batches`` batches.

    ``batches`` yields input tensors or ``(x, y, ...)`` tuples (a DataLoader over the training set); only the
    first ``num_batches`` are used. ``num_batches=None`` skips recalibration (for ablations) and returns 0.
    Only the batch norms are put in train mode, so dropout or drop-path elsewhere does not disturb the
    statistics. Afterwards the model is in eval mode and every batch norm has its original ``momentum``
    back. Returns the number of batches used; if ``batches`` yields none, the statistics are left as they
    were and a ValueError is raised.
    """
    if num_batches is None:
        return 0
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be an integer >= 1 (or None to skip), got {num_batches!r}")
    layers = batch_norm_layers(model)
    if not layers:
        model.eval()
        return 0
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    saved = [(m.momentum, _stats(m)) for m in layers]
    used = 0
    model.eval()
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch counts the same
            m.train()
        with torch.no_grad():
            for batch in batches:
                if used >= num_batches:
                    break
                x = batch if isinstance(batch, torch.Tensor) else batch[0]
                model(x.to(device))
                used += 1
        if used == 0:
            raise ValueError("recalibrate_bn got no batches; give it an iterable of training batches")
    except BaseException:
        for m, (_, stats) in zip(layers, saved):
            _restore(m, stats)
        raise
    finally:
        for m, (momentum, _) in zip(layers, saved):
            m.momentum = momentum
        model.eval()
    return used


def _stats(m: _BatchNorm) -> dict[str, Tensor]:
    return {name: buf.clone() for name, buf in m.named_buffers(recurse=False) if buf is not None}


def _restore(m: _BatchNorm, stats: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, buf in m.named_buffers(recurse=False):
            if name in stats:
                buf.copy_(stats[name])
