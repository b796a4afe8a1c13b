"""``TrainConfig``: how a supernet is trained (the ``supernet:`` section of a run configuration)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from search_spaces.validation import format_validation_error

__all__ = ["RESUME_FREE_KEYS", "TrainConfig"]

_SANDWICH_KEYS = ("sandwich_random_paths", "inplace_distillation", "distill_temperature")

# Keys that may change between an interrupted run and its resumption: they do not change what is trained.
RESUME_FREE_KEYS: frozenset[str] = frozenset({"threads", "bn_recalibration", "bn_batches"})


class TrainConfig(BaseModel):
    """Single-path supernet training: SGD with Nesterov momentum, linear warm-up then cosine decay per step.

    The defaults are tuned for the embedded default task, the ``small`` ShuffleNet layout on digits at 16x16
    (about 1,250 training images, 19 steps an epoch): about a minute on one CPU thread, and 20 random subnets
    score a median of about 97% validation accuracy after BN recalibration (figures and the command that
    measures them: tests/benchmarks/test_supernet_benchmarks.py, results/benchmarks/supernet_accuracy.json).
    ``threads`` defaults to 1: such small convolutions gain nothing from more threads, and two threads on
    a busy two-core machine (search workers, other jobs) slow training down many times over.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "1" is not 1: no silent coercion

    epochs: int = Field(60, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)  # not applied to batch-norm parameters nor biases
    warmup_epochs: float = Field(2.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)  # max global gradient norm; None: no clipping
    # NASNet's scheduled drop path: the rate rises linearly from 0 at the first step to this at the last
    # (supernets with ``supports_drop_path`` only, e.g. nasnet); 0 disables it.
    drop_path_prob: float = Field(0.0, ge=0, lt=1)
    # Mixed precision: "auto" is fp16 with a GradScaler on CUDA and off on CPU; "bf16" works on both.
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    sampler: Literal["uniform", "budget", "fair"] = "uniform"
    budget_low: float | None = None  # the "budget" sampler's interval of the caller's cost
    budget_high: float | None = None
    budget_metric: str = "mult_adds"  # the name of that cost, for messages and the caller's choice of cost_fn
    paths_per_step: int = Field(1, ge=1)  # paths whose gradients add up in one update (FairNAS: n)
    # The sandwich rule (BigNAS, Yu et al. 2020): every step trains the largest and the smallest architecture
    # and ``sandwich_random_paths`` drawn by ``sampler``; with ``inplace_distillation`` all but the largest
    # learn from the largest one's soft predictions (temperature ``distill_temperature``) instead of the labels.
    sandwich: bool = False
    sandwich_random_paths: int = Field(2, ge=0)
    inplace_distillation: bool = True
    distill_temperature: float = Field(1.0, gt=0)
    # Distributed training (torchrun): batch norm statistics over the global batch instead of each process's share.
    sync_bn: bool = False
    seed: int = 0
    threads: int | None = Field(1, ge=1)  # torch threads while training, set by the caller (nas); None: as is
    bn_recalibration: bool = True  # recompute a subnet's BN statistics before scoring it
    bn_batches: int = Field(20, ge=1)  # training batches for that

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} exceeds epochs {self.epochs}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0; set momentum or nesterov: false")
        has_budget = self.budget_low is not None or self.budget_high is not None
        if self.sampler == "budget" and not has_budget:
            raise ValueError("sampler 'budget' needs budget_low, budget_high or both")
        if self.sampler != "budget" and has_budget:
            raise ValueError(f"budget_low/budget_high are only used by sampler 'budget', not {self.sampler!r}")
        if self.budget_low is not None and self.budget_high is not None and self.budget_low > self.budget_high:
            raise ValueError(f"budget_low {self.budget_low} is above budget_high {self.budget_high}")
        self._check_sandwich()
        return self

    def _check_sandwich(self) -> None:
        # By value, not by the keys given: a dumped and reloaded config holds every key.
        changed = [key for key in _SANDWICH_KEYS if getattr(self, key) != type(self).model_fields[key].default]
        if not self.sandwich:
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply with sandwich: true")
            return
        if self.sampler == "fair":
            raise ValueError(
                "sandwich: true draws its random paths from sampler 'uniform' or 'budget', not 'fair' "
                "(the largest and smallest paths of every step would break strict fairness)"
            )
        if self.paths_per_step != 1:
            raise ValueError(
                f"with sandwich: true a step trains 2 + sandwich_random_paths paths; paths_per_step must stay 1, "
                f"got {self.paths_per_step}"
            )
        if not self.inplace_distillation and self.distill_temperature != 1.0:
            raise ValueError("distill_temperature only applies with inplace_distillation: true")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrainConfig:
        """A config from a plain mapping; a bad or unknown key is a ValueError naming it."""
        try:
            return cls(**dict(data or {}))
        except ValidationError as err:
            raise ValueError("invalid supernet config: " + format_validation_error(err, cls)) from None

    @property
    def recalibration_batches(self) -> int | None:
        """``bn_batches`` if recalibration is on, else None (what ``recalibrate_bn`` takes)."""
        return self.bn_batches if self.bn_recalibration else None

    def differences(self, other: Mapping[str, Any], ignore: frozenset[str] = RESUME_FREE_KEYS) -> list[str]:
        """Keys whose values differ from ``other`` (a dumped config), as ``key: other -> self`` strings."""
        mine = self.model_dump(mode="json")
        # A key absent from ``other`` (a config written before the key existed) had its default value.
        defaults = {k: f.default for k, f in type(self).model_fields.items() if k not in other}
        other = {**defaults, **other}
        keys = sorted((set(mine) | set(other)) - ignore)
        return [f"{k}: {other.get(k, '<absent>')!r} -> {mine.get(k, '<absent>')!r}" for k in keys
                if mine.get(k) != other.get(k)]
