"""Accuracy on a held-out split with its Wilson score interval (``scipy.stats.binomtest``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scipy.stats import binomtest

from supernet import top1_accuracy

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

__all__ = ["IntervalAccuracy", "accuracy_with_interval", "wilson_interval"]


@dataclass(frozen=True)
class IntervalAccuracy:
    """Top-1 accuracy ``correct / n`` with a Wilson score interval at ``level``."""

    accuracy: float
    low: float
    high: float
    correct: int
    n: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def text(self) -> str:
        return f"{100 * self.accuracy:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}] (n={self.n})"


def wilson_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n``."""
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    ci = binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_with_interval(model: nn.Module, dataset: Dataset[Any], level: float = 0.95) -> IntervalAccuracy:
    """Top-1 accuracy of ``model`` on ``dataset`` and its Wilson interval."""
    n = len(dataset)  # type: ignore[arg-type]
    accuracy = top1_accuracy(model, dataset)
    correct = round(accuracy * n)
    low, high = wilson_interval(correct, n, level)
    return IntervalAccuracy(correct / n, low, high, correct, n, level)
