"""Single-path supernet training with per-epoch checkpoints and exact resumption.

Each step draws one path (or ``paths_per_step`` paths) from the configured sampler and trains only that path
on one batch (SPOS, Guo et al. 2020); with ``sandwich`` a step trains the largest, the smallest and
``sandwich_random_paths`` sampled paths, the smaller ones distilled in place from the largest (BigNAS,
``supernet.sandwich``). Gradients of a step's paths are averaged (not summed as in BigNAS), so the learning
rate of single-path training carries over. A supernet whose paths have their own input resolution
(efficientnet) resizes the batch in its ``forward``. Everything that decides the next step is saved at the end of every
epoch -- weights, optimiser, schedule, gradient scaler, sampler and torch RNG state -- and the data order of
epoch ``e`` is a permutation drawn from ``seed + e`` alone, so a run stopped after any epoch and started
again with the same ``out_dir`` ends with exactly the weights of a run that never stopped.

NASNet's scheduled drop path (``drop_path_prob``) passes the supernet's forward a rate that is a function of
the global step alone, and draws its masks from torch's generator, whose state the checkpoint keeps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm import tqdm

from supernet._optim import WarmupCosine, make_optimizer, resolve_amp
from supernet.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    remove_stale_temporaries,
)
from supernet.config import TrainConfig
from supernet.data import make_loader
from supernet.distributed import (
    StepSeededSampler,
    rank_seed,
    reduce_epoch_metrics,
    save_on_main,
    shard_loader,
    wrap_model,
)
from supernet.samplers import BudgetSampler, FairSampler, PathSampler, UniformSampler
from supernet.sandwich import SandwichRule, distillation_loss

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from search_spaces import Architecture, SearchSpace
    from supernet._base import Supernet
    from supernet.distributed import DistributedContext

__all__ = ["NonFiniteLossError", "TrainResult", "make_path_sampler", "train_supernet"]

EpochCallback = Callable[[int, Mapping[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights); the last checkpoint was left as it was."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


@dataclass(frozen=True)
class TrainResult:
    """What ``train_supernet`` did. The supernet passed in holds the trained weights."""

    epochs_completed: int
    history: list[dict[str, float]]  # one entry per epoch: loss, accuracy, images_per_s, lr, seconds
    checkpoint: Path
    resumed_from_epoch: int  # 0 for a fresh start
    seconds: float  # wall time of this call
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def make_path_sampler(
    space: SearchSpace, cfg: TrainConfig, cost_fn: Callable[[Architecture], float] | None = None
) -> PathSampler:
    """The path sampler ``cfg.sampler`` names, seeded with ``cfg.seed``."""
    if cfg.sampler == "uniform":
        return UniformSampler(space, cfg.seed)
    if cfg.sampler == "fair":
        return FairSampler(space, cfg.seed)
    if cost_fn is None:
        raise ValueError(f"sampler 'budget' needs a cost function computing {cfg.budget_metric!r} of an architecture")
    return BudgetSampler(space, cost_fn, cfg.budget_low, cfg.budget_high, cfg.seed, metric=cfg.budget_metric)


def train_supernet(
    supernet: Supernet,
    train_set: Dataset[Any],
    cfg: TrainConfig | Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    device: str | torch.device = "cpu",
    cost_fn: Callable[[Architecture], float] | None = None,
    on_epoch_end: EpochCallback | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train ``supernet`` in place on ``train_set`` (``(x, y)`` pairs), checkpointing to ``out_dir``.

    If ``out_dir`` holds a checkpoint, training resumes after its last epoch (the configuration must match,
    but for ``threads`` and the BN-recalibration keys); if that was the last epoch, the weights are loaded
    and the call returns at once. ``cost_fn`` is needed by the ``budget`` sampler. ``on_epoch_end(epoch,
    metrics)`` runs after each epoch's checkpoint is written (an exception from it stops training with that
    checkpoint kept). Torch's global RNG (dropout) is forked for the call, so the caller's random state is
    untouched. Thread counts are the caller's (``cfg.threads`` is applied by ``nas``, which owns them).
    ``distributed``: this process's place in a torchrun job (``supernet.distributed``): DDP on its device,
    ``batch_size`` as the global batch, paths seeded by the step, rank 0 alone writing checkpoints.
    """
    start = time.perf_counter()
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    device = torch.device(device) if distributed is None else distributed.device
    progress = progress and (distributed is None or distributed.is_main)
    amp_dtype, use_scaler = resolve_amp(cfg.amp, device)
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if not isinstance(train_set, Sized):
        raise ValueError(f"train_set must be a map-style dataset with a length, got {type(train_set).__name__}")
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set ({len(train_set)} samples)")

    if cfg.drop_path_prob > 0 and not supernet.supports_drop_path:
        raise ValueError(
            f"drop_path_prob {cfg.drop_path_prob} needs a supernet with drop path; the {supernet.space.name!r} "
            "supernet has none (allowed here: drop_path_prob 0)"
        )
    space_record = {"name": supernet.space.name, "config": supernet.space.config_dict(), **_options(supernet)}
    data_record = {"samples": len(train_set)}
    state = _resume_state(ckpt_path, cfg, space_record, data_record)
    supernet.to(device)
    if state is not None and int(state["epoch"]) >= cfg.epochs:  # finished: the weights, nothing else
        supernet.load_state_dict(state["model"])
        epochs = int(state["epoch"])
        return TrainResult(epochs, list(state["metrics"]), ckpt_path, epochs, time.perf_counter() - start, _dump(cfg))

    model = supernet if distributed is None else wrap_model(supernet, distributed, sync_bn=cfg.sync_bn)
    optimizer = make_optimizer(supernet, cfg)
    total = cfg.epochs * steps_per_epoch
    schedule = WarmupCosine(round(cfg.warmup_epochs * steps_per_epoch), total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    sampler = make_path_sampler(supernet.space, cfg, cost_fn)
    sandwich = SandwichRule(supernet, sampler, cfg.sandwich_random_paths) if cfg.sandwich else None
    history: list[dict[str, float]] = []
    first_epoch = 0
    if state is not None:
        supernet.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        history = list(state["metrics"])
        first_epoch = int(state["epoch"])
    if distributed is not None and sandwich is not None:
        raise ValueError(
            "sandwich: true is not supported with distributed training (torchrun) yet; "
            "allowed there: sandwich: false (single-path sampling)"
        )
    if distributed is not None:  # the same path on every rank: drawn from a generator seeded by the step
        sampler = StepSeededSampler(sampler, cfg.seed, first_epoch * steps_per_epoch, cfg.paths_per_step)

    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        if state is None:
            torch.manual_seed(cfg.seed)
        else:
            _set_rng(state["rng"], device)
        if distributed is not None:  # each rank its own dropout stream, a function of (seed, first epoch, rank)
            torch.manual_seed(rank_seed(cfg.seed, first_epoch, distributed.rank))
        for epoch in range(first_epoch, cfg.epochs):
            metrics = _train_epoch(
                model, sampler, sandwich, optimizer, scheduler, scaler, criterion, train_set, cfg, epoch,
                steps_per_epoch, device, amp_dtype, progress, ckpt_path, distributed,
            )
            if distributed is not None:
                metrics = reduce_epoch_metrics(metrics, distributed)
            _check_weights(supernet, epoch + 1, steps_per_epoch, ckpt_path)
            history.append(metrics)
            save_on_main(
                distributed,
                {
                    "format": FORMAT_VERSION,
                    "epoch": epoch + 1,
                    "model": supernet.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "sampler": sampler.state_dict(),
                    "rng": _get_rng(device),
                    "config": _dump(cfg),
                    "space": space_record,
                    "data": data_record,
                    "metrics": history,
                },
                ckpt_path,
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, metrics)
    return TrainResult(cfg.epochs, history, ckpt_path, first_epoch, time.perf_counter() - start, _dump(cfg))


def _train_epoch(
    supernet: nn.Module,  # the supernet, or its DDP wrapper
    sampler: PathSampler,
    sandwich: SandwichRule | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    criterion: nn.Module,
    train_set: Dataset[Any],
    cfg: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    progress: bool,
    ckpt_path: Path,
    distributed: DistributedContext | None = None,
) -> dict[str, float]:
    supernet.train()
    loader = (
        make_loader(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch, drop_last=True)
        if distributed is None
        else shard_loader(train_set, cfg.batch_size, distributed, seed=cfg.seed, epoch=epoch)
    )
    loss_sum = 0.0
    correct = seen = images = 0
    busy = 0.0
    # Listed once: walking the module tree every step costs milliseconds on supernets of thousands of modules.
    all_params = list(supernet.parameters())
    bar = tqdm(loader, total=steps_per_epoch, desc=f"supernet epoch {epoch + 1}/{cfg.epochs}",
               disable=not progress, dynamic_ncols=True)
    for step, (x_cpu, y_cpu) in enumerate(bar):
        tick = time.perf_counter()
        x, y = x_cpu.to(device, non_blocking=True), y_cpu.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        extra = _forward_options(cfg, epoch * steps_per_epoch + step, cfg.epochs * steps_per_epoch)
        paths = sandwich.paths() if sandwich is not None else [sampler.sample() for _ in range(cfg.paths_per_step)]
        teacher: torch.Tensor | None = None  # the largest path's logits, with in-place distillation
        for arch in paths:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = supernet(x, arch, **extra)
                loss = criterion(logits, y) if teacher is None else distillation_loss(
                    logits, teacher, cfg.distill_temperature)
            if sandwich is not None and cfg.inplace_distillation and teacher is None:
                teacher = logits.detach()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"non-finite loss {value} at epoch {epoch + 1}, step {step + 1} (architecture "
                    f"{arch.arch_id}); the checkpoint of epoch {epoch} in {ckpt_path} is unchanged. "
                    "Lower lr or set grad_clip, and train into a new directory.",
                    epoch + 1,
                    step + 1,
                )
            scaler.scale(loss / len(paths)).backward()
            loss_sum += value / len(paths)
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += int(y.numel())
        images += int(y.numel())
        if cfg.grad_clip is not None:
            scaler.unscale_(optimizer)
            params = [p for p in all_params if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        busy += time.perf_counter() - tick
        if progress:
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{images / busy:.0f}", refresh=False)
    bar.close()
    return {
        "epoch": float(epoch + 1),
        "loss": loss_sum / steps_per_epoch,
        "accuracy": correct / seen,
        "images_per_s": images / busy if busy > 0 else 0.0,
        "lr": float(scheduler.get_last_lr()[0]),
        "seconds": busy,
    }


def _forward_options(cfg: TrainConfig, step: int, total_steps: int) -> dict[str, float]:
    """Keyword arguments of the supernet's forward at global ``step``: the scheduled drop-path rate, if on.

    The rate is a function of the step alone (0 at the first step, ``drop_path_prob`` at the last), so a
    resumed run continues the schedule exactly.
    """
    if cfg.drop_path_prob <= 0:
        return {}
    return {"drop_path": cfg.drop_path_prob * step / max(1, total_steps - 1)}


def _resume_state(
    path: Path, cfg: TrainConfig, space_record: dict[str, Any], data_record: dict[str, Any]
) -> dict[str, Any] | None:
    remove_stale_temporaries(path)  # a write killed half-way leaves its temporary file: the training owns the dir
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if state["data"] != data_record:
        raise CheckpointError(
            f"{path} was trained on {state['data']['samples']} samples, this training set has "
            f"{data_record['samples']}; resume with the same data or use a new output directory"
        )
    if state["space"] != space_record:
        raise CheckpointError(
            f"{path} was trained for space {state['space']['name']!r} with {_settings(state['space'])}, "
            f"not {space_record['name']!r} with {_settings(space_record)}; use a new output directory"
        )
    diffs = cfg.differences(state["config"])
    if diffs:
        raise CheckpointError(
            f"{path} was written with a different supernet config ({'; '.join(diffs)}); "
            "resume with the same config or use a new output directory"
        )
    return state


def _check_weights(supernet: nn.Module, epoch: int, step: int, ckpt_path: Path) -> None:
    for name, param in supernet.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise NonFiniteLossError(
                f"parameter {name} is not finite after epoch {epoch}; the checkpoint of epoch {epoch - 1} in "
                f"{ckpt_path} is unchanged. Lower lr or set grad_clip, and train into a new directory.",
                epoch,
                step,
            )


def _get_rng(device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng(rng: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


def _settings(record: Mapping[str, Any]) -> str:
    """A space record's config (and supernet options, if any) for messages."""
    text = f"config {record['config']}"
    return text + (f" and supernet options {record['supernet_options']}" if "supernet_options" in record else "")


def _options(supernet: Supernet) -> dict[str, Any]:
    """The supernet's constructor options for the checkpoint's space record (absent when it has none, so
    checkpoints of option-less supernets keep their former record)."""
    options = supernet.options()
    return {"supernet_options": options} if options else {}


def _dump(cfg: TrainConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json")
