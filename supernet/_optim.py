"""Optimiser pieces of supernet training: parameter groups, learning-rate schedule, mixed precision."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

if TYPE_CHECKING:
    from supernet.config import TrainConfig

__all__ = ["WarmupCosine", "make_optimizer", "resolve_amp"]

_NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum; weight decay on weights only, not on norm parameters nor biases.

    Parameters of paths a step did not use have no gradient and are skipped by SGD altogether: neither
    their momentum nor their weight decay moves them (zero_grad sets gradients to None). An elastic layer
    (efficientnet) is one parameter of which a step uses a slice: the rest of it gets a zero gradient, so
    momentum from earlier steps and weight decay still move it, as in Once-for-All.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (no_decay if isinstance(module, _NORMS) or name == "bias" else decay).append(param)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
    )


class WarmupCosine:
    """Learning-rate factor per step: linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0.

    A callable object (not a lambda) so that ``LambdaLR.state_dict`` records its two integers.
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total >= 1")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_amp(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to use a GradScaler) for an ``amp`` setting on ``device``."""
    if mode == "off":
        return None, False
    if mode == "auto":
        return (torch.float16, True) if device.type == "cuda" else (None, False)
    if mode == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"amp 'bf16' is not supported by {device}; allowed here: 'auto', 'off', 'fp16'")
        return torch.bfloat16, False
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError(f"amp 'fp16' needs a CUDA device, got {device}; allowed here: 'auto', 'off', 'bf16'")
        return torch.float16, True
    raise ValueError(f"unknown amp mode {mode!r}; allowed: 'auto', 'off', 'bf16', 'fp16'")
