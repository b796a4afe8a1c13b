"""The one scorer of subnets: extract, recalibrate BN on training data (DetNAS), top-1 accuracy.

The search, the export (which rebuilds the very model the search scored) and the benchmarks all score through
:func:`score_subnet` / :func:`recalibrated_subnet`, so a figure means the same thing wherever it appears.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from supernet.bn import recalibrate_bn
from supernet.data import make_loader

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from search_spaces import Architecture
    from supernet._base import Supernet

__all__ = ["SubnetScore", "correct_predictions", "recalibrated_subnet", "score_subnet", "top1_accuracy"]


def correct_predictions(
    model: nn.Module,
    dataset: Dataset[Any],
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Whether ``model``'s top-1 prediction is right, per sample of ``dataset`` in its order (bool tensor, CPU).

    Eval and inference mode; the model's train/eval mode is restored afterwards.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    parts: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for x, y in make_loader(dataset, batch_size):
                logits = model(x.to(device))
                parts.append((logits.argmax(dim=1) == y.to(device)).cpu())
    finally:
        model.train(was_training)
    if not parts or sum(int(p.numel()) for p in parts) == 0:
        raise ValueError("top1_accuracy got an empty dataset; give it at least one (x, y) pair")
    return torch.cat(parts)


def top1_accuracy(
    model: nn.Module,
    dataset: Dataset[Any],
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``dataset`` of ``(x, y)`` pairs, in eval and inference mode.

    The model's train/eval mode is restored afterwards.
    """
    correct = correct_predictions(model, dataset, batch_size, device=device)
    return int(correct.sum()) / int(correct.numel())


def recalibrated_subnet(
    supernet: Supernet,
    arch: Architecture | Mapping[str, Any],
    train_set: Dataset[Any],
    *,
    bn_batches: int | None = 20,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """The static subnet of ``arch`` with BN statistics recomputed on ``bn_batches`` training batches, in eval mode.

    The batches come in an order drawn from ``seed`` alone, so the same call always gives the same statistics.
    ``bn_batches=None`` keeps the statistics inherited from the supernet (the DetNAS ablation).
    """
    model = supernet.extract(arch)
    recalibrate_bn(model, make_loader(train_set, batch_size, shuffle=True, seed=seed), bn_batches)
    return model.eval()


@dataclass(frozen=True)
class SubnetScore:
    """Validation accuracy of one extracted subnet, the model scored, and what it took to get it."""

    accuracy: float
    bn_batches: int  # batches used for BN recalibration (0: not recalibrated, or no BN layer)
    seconds_extract: float
    seconds_bn: float
    seconds_eval: float
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    correct: torch.Tensor | None = field(default=None, repr=False, compare=False)  # per validation sample, in order


def score_subnet(
    supernet: Supernet,
    arch: Architecture | Mapping[str, Any],
    train_set: Dataset[Any],
    val_set: Dataset[Any],
    *,
    bn_batches: int | None = 20,
    batch_size: int = 64,
    seed: int = 0,
    eval_batch_size: int = 256,
) -> SubnetScore:
    """Extract ``arch``, recalibrate its BN on ``bn_batches`` shuffled training batches, score it on ``val_set``.

    ``bn_batches=None`` keeps the statistics inherited from the supernet (the ablation). The training batches
    come in an order drawn from ``seed`` alone. The scored model (eval mode) is kept in the result.
    """
    start = time.perf_counter()
    model = supernet.extract(arch)
    extracted = time.perf_counter()
    used = recalibrate_bn(model, make_loader(train_set, batch_size, shuffle=True, seed=seed), bn_batches)
    model.eval()
    calibrated = time.perf_counter()
    correct = correct_predictions(model, val_set, eval_batch_size)
    accuracy = int(correct.sum()) / int(correct.numel())
    done = time.perf_counter()
    return SubnetScore(accuracy, used, extracted - start, calibrated - extracted, done - calibrated, model, correct)
