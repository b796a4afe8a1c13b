"""Standalone training of one static network with a :class:`~nas.finetune.recipe.Recipe`, resumable.

At the end of every epoch everything that decides the next one (weights, optimiser, schedule, torch's RNG,
the history) goes to one checkpoint file, replaced atomically; the data order of epoch ``e`` is drawn from
``(recipe.seed, e)`` alone. A training stopped after any epoch and started again with the same checkpoint path
ends with the weights of one that never stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from supernet import make_loader, save_checkpoint
from supernet._optim import WarmupCosine, make_optimizer

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from nas.finetune.recipe import Recipe

__all__ = ["StandaloneResult", "distillation_loss", "train_standalone"]

_FORMAT = "standalone-1"


@dataclass(frozen=True)
class StandaloneResult:
    """What :func:`train_standalone` did; the model passed in holds the trained weights."""

    epochs: int
    history: list[dict[str, float]]
    resumed_from_epoch: int
    seconds: float


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss: KL(teacher || student) at ``temperature``, times T² (gradient scale)."""
    log_p = F.log_softmax(student / temperature, dim=1)
    q = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


def train_standalone(
    model: nn.Module,
    train_set: Dataset[Any],
    recipe: Recipe,
    *,
    checkpoint: Path | None = None,
    teacher: nn.Module | None = None,
    on_epoch_end: Callable[[int, Mapping[str, float]], None] | None = None,
) -> StandaloneResult:
    """Train ``model`` in place (CPU) on ``train_set`` of ``(x, y)`` pairs; resume from ``checkpoint`` if it exists.

    ``teacher`` (in eval mode, frozen) is needed when ``recipe.distill_weight > 0``. Torch's global RNG is
    forked for the call, so the caller's random state is untouched.
    """
    start = time.perf_counter()
    if recipe.distill_weight > 0 and teacher is None:
        raise ValueError("recipe.distill_weight > 0 needs a teacher model")
    if not isinstance(train_set, Sized):
        raise ValueError(f"train_set must be a map-style dataset with a length, got {type(train_set).__name__}")
    steps = len(train_set) // recipe.batch_size
    if steps < 1:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the training set ({len(train_set)} samples)")
    optimizer = make_optimizer(model, recipe.optimizer_config())
    schedule = WarmupCosine(min(round(recipe.warmup_epochs * steps), recipe.epochs * steps), recipe.epochs * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    history: list[dict[str, float]] = []
    first = 0
    state = _load(checkpoint, recipe)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, first = list(state["history"]), int(state["epoch"])
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        if state is None:
            torch.manual_seed(recipe.seed)
        else:
            torch.set_rng_state(state["rng"])
        for epoch in range(first, recipe.epochs):
            metrics = _epoch(model, train_set, recipe, epoch, steps, optimizer, scheduler, criterion, teacher)
            history.append(metrics)
            if checkpoint is not None:
                save_checkpoint(
                    {
                        "format": _FORMAT,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(),
                        "recipe": recipe.dump(),
                        "history": history,
                    },
                    checkpoint,
                )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)
    model.eval()
    return StandaloneResult(recipe.epochs, history, first, time.perf_counter() - start)


def _epoch(
    model: nn.Module,
    train_set: Dataset[Any],
    recipe: Recipe,
    epoch: int,
    steps: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    teacher: nn.Module | None,
) -> dict[str, float]:
    model.train()
    loader = make_loader(train_set, recipe.batch_size, shuffle=True, seed=recipe.seed * 100_003 + epoch, drop_last=True)
    mix = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)  # mixup partners
    draws = np.random.default_rng([recipe.seed, epoch])  # mixup weights
    loss_sum, correct, seen, tick = 0.0, 0, 0, time.perf_counter()
    for x, y in loader:
        y_mix, lam = y, 1.0
        if recipe.mixup_alpha > 0:
            lam = float(draws.beta(recipe.mixup_alpha, recipe.mixup_alpha))
            order = torch.randperm(len(y), generator=mix)
            x, y_mix = lam * x + (1 - lam) * x[order], y[order]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = lam * criterion(logits, y) + (1 - lam) * criterion(logits, y_mix)
        if teacher is not None and recipe.distill_weight > 0:
            with torch.no_grad():
                soft = teacher(x)
            loss = (1 - recipe.distill_weight) * loss + recipe.distill_weight * distillation_loss(
                logits, soft, recipe.temperature
            )
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss {value} at epoch {epoch + 1}; lower the learning rate")
        loss.backward()
        if recipe.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        loss_sum += value
        correct += int((logits.detach().argmax(dim=1) == y).sum())
        seen += int(y.numel())
    return {
        "epoch": float(epoch + 1),
        "loss": loss_sum / steps,
        "accuracy": correct / max(seen, 1),
        "lr": float(scheduler.get_last_lr()[0]),
        "seconds": time.perf_counter() - tick,
    }


def _load(checkpoint: Path | None, recipe: Recipe) -> dict[str, Any] | None:
    if checkpoint is None or not checkpoint.is_file():
        return None
    state: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{checkpoint} is not a standalone-training checkpoint; delete it or choose another path")
    if state["recipe"] != recipe.dump():
        raise ValueError(f"{checkpoint} was trained with another recipe; delete it to start over")
    return state
