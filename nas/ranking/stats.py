"""Rank agreement with intervals: Kendall tau, Spearman rho, top-k overlap, the seed-noise ceiling, a verdict.

Intervals are percentile bootstrap intervals over *architectures* (``scipy.stats.bootstrap``, paired: an
architecture is resampled with all its scores), 95 % by default. A resample in which one side is constant has no
order: its tau is undefined and counted as 0 (no agreement), which only widens the interval towards zero; with
K >= 4 distinct values this is rare. Few architectures give wide intervals: that is the honest answer.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["Correlation", "correlate", "seed_ceiling", "top_k_overlap", "verdict"]

_RESAMPLES = 2000


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its bootstrap interval over architectures."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def text(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]" if math.isfinite(self.value) else "n/a"


def _tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    with warnings.catch_warnings():  # a constant side is handled below
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(stats.kendalltau(x, y).statistic)
    return 0.0 if math.isnan(value) else value


def _rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(stats.spearmanr(x, y).statistic)
    return 0.0 if math.isnan(value) else value


def _bootstrap(statistic: Callable[..., float], columns: Sequence[np.ndarray], level: float, seed: int) -> Correlation:
    n = len(columns[0])
    value = statistic(*columns)
    if n < 3 or len({tuple(c) for c in zip(*columns)}) < 2:
        return Correlation(value, math.nan, math.nan, n)
    with np.errstate(all="ignore"):
        result = stats.bootstrap(
            tuple(columns), statistic, paired=True, vectorized=False, n_resamples=_RESAMPLES,
            confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
        )
    ci = result.confidence_interval
    return Correlation(value, float(ci.low), float(ci.high), n)


def correlate(x: Sequence[float], y: Sequence[float], *, level: float = 0.95, seed: int = 0) -> dict[str, Correlation]:
    """Kendall tau and Spearman rho between ``x`` and ``y`` (one value per architecture), with intervals."""
    columns = [np.asarray(x, dtype=float), np.asarray(y, dtype=float)]
    return {
        "kendall_tau": _bootstrap(_tau, columns, level, seed),
        "spearman_rho": _bootstrap(_rho, columns, level, seed + 1),
    }


def seed_ceiling(per_seed: np.ndarray, *, level: float = 0.95, seed: int = 0) -> Correlation | None:
    """Mean Kendall tau between every two seeds of the same architectures (``per_seed``: archs x seeds).

    It is how far two standalone trainings agree with each other: no proxy can be expected to agree better
    with one of them. None with fewer than two seeds.
    """
    if per_seed.ndim != 2 or per_seed.shape[1] < 2:
        return None
    pairs = list(itertools.combinations(range(per_seed.shape[1]), 2))

    def mean_tau(*cols: np.ndarray) -> float:
        return float(np.mean([_tau(cols[a], cols[b]) for a, b in pairs]))

    return _bootstrap(mean_tau, [per_seed[:, j] for j in range(per_seed.shape[1])], level, seed)


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """Share of the ``k`` best by ``x`` that are also among the ``k`` best by ``y`` (ties broken by position)."""
    k = max(1, min(k, len(x)))
    top_x = set(np.argsort(-np.asarray(x, dtype=float), kind="stable")[:k])
    top_y = set(np.argsort(-np.asarray(y, dtype=float), kind="stable")[:k])
    return len(top_x & top_y) / k


def verdict(tau: Correlation, ceiling: Correlation | None) -> tuple[str, str]:
    """A plain verdict (``trusted``, ``partly``, ``not trusted``, ``unknown``) and a sentence saying why."""
    if not math.isfinite(tau.low):
        return "unknown", (
            f"with {tau.n} architecture(s) no interval can be computed: rerun 'nas rank' with more --archs."
        )
    if tau.low > 0 and (ceiling is None or tau.value >= 0.75 * ceiling.value):
        if ceiling is None:
            return "trusted", (
                f"the supernet orders these {tau.n} architectures like standalone training does (tau {tau.text()}, "
                "interval above 0); one seed only, so the seed-noise ceiling is unknown."
            )
        return "trusted", (
            f"the supernet orders these {tau.n} architectures like standalone training does (tau {tau.text()}), "
            f"close to how well two training seeds agree with each other (tau {ceiling.text()})."
        )
    if tau.low > 0:
        return "partly", (
            f"the supernet's order agrees with standalone training better than chance (tau {tau.text()}) but "
            f"clearly less than two training seeds agree (tau {ceiling.text() if ceiling else 'n/a'}): "
            "trust the coarse order, not the winner among close candidates."
        )
    if ceiling is not None and math.isfinite(ceiling.low) and ceiling.low <= 0:
        return "not trusted", (
            f"even two standalone seeds do not agree on the order (tau {ceiling.text()}): on this task the "
            "architectures cannot be told apart, so no ranking of them means anything."
        )
    if tau.high < 0:
        return "not trusted", (
            f"the supernet's order runs against standalone training's (tau {tau.text()}, interval below 0): "
            "the winner was not chosen for its accuracy."
        )
    return "not trusted", (
        f"the supernet's order cannot be told from chance (tau {tau.text()}, interval includes 0): "
        "the winner was not chosen for its accuracy."
    )
