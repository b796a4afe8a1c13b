"""``Recipe``: how a static network is trained on its own, from scratch (``nas rank``) or from inherited weights.

The refinements the literature recommends for training the found network (DetNAS's last step): SGD with Nesterov
momentum and no weight decay on norms and biases, a linear warm-up then a cosine decay of the learning rate per
step, label smoothing; mixup (Zhang et al. 2018) and knowledge distillation (Hinton et al. 2015: soft targets at
a temperature, blended with the hard labels) as options.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from supernet import TrainConfig

__all__ = ["Recipe"]


class Recipe(BaseModel):
    """One standalone training: optimiser, schedule and regularisers. Immutable; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, gt=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    mixup_alpha: float = Field(0.0, ge=0)  # 0: no mixup; else the Beta(alpha, alpha) of the mixing weight
    distill_weight: float = Field(0.0, ge=0, le=1)  # weight of the teacher's soft targets (0: no distillation)
    temperature: float = Field(4.0, gt=0)
    seed: int = 0  # data order, mixup draws (the initial weights are the caller's)

    def optimizer_config(self) -> TrainConfig:
        """The supernet's optimiser settings with this recipe's values (one optimiser factory for both)."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=True,
            weight_decay=self.weight_decay,
            warmup_epochs=min(self.warmup_epochs, float(self.epochs)),
            label_smoothing=self.label_smoothing,
            grad_clip=self.grad_clip,
            seed=self.seed,
        )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
