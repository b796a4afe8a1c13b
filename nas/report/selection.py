"""Budgets and selection: who competes, who meets a budget, the best under budgets, Pareto fronts and sets.

Rules
-----
- **Who competes.** Only ``COMPLETE`` records with a finite accuracy. Failed, running and pruned trials are
  counted by the report, never ranked.
- **Meeting a budget.** A budget bounds one cost metric from above (``value <= budget``). A candidate whose value
  of that metric is unknown (NaN, e.g. no energy measurement) cannot be shown to meet it, so it does not.
  Budgets may be relative (``"60%"`` of the most accurate candidate's value, resolved against the records being
  selected from) and a latency budget may ask for a confidence (``{max: 1.0, confidence: 0.95}``: met when the
  candidate's latency quantile at 95 % is within it); see :mod:`nas.core.budgets`.
- **The best.** The highest accuracy; ties go to the lower value of the budgeted metrics (in the order given),
  then the lower latency, then the earlier trial, so the choice is reproducible.
- **Pareto front** of a cost: the candidates no other candidate beats on both accuracy (higher) and that cost
  (lower) with a strict gain on at least one. Exact duplicates are both kept.
- **Units.** ``parse_budgets`` takes the command line's units (``--max-memory-access-mb``: 1 MB = 10^6 bytes)
  and returns budgets in record units (``memory_access_bytes``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.core.budgets import Budget, budget_value, resolve_budgets
from nas.core.metrics import COST_METRICS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from nas.search.records import CandidateRecord

__all__ = [
    "BUDGET_OPTIONS",
    "by_accuracy",
    "check_budgets",
    "competing",
    "meets_budgets",
    "pareto_front",
    "pareto_set",
    "parse_budgets",
    "select_best",
]

# Command-line budget options: option name -> (record metric, factor from the option's unit to the metric's unit).
BUDGET_OPTIONS: dict[str, tuple[str, float]] = {
    "max_latency_ms": ("latency_ms", 1.0),
    "max_energy_mj": ("energy_mj", 1.0),
    "max_memory_access_mb": ("memory_access_bytes", 1e6),
}


def _allowed_budgets_text() -> str:
    return f"allowed: {', '.join(BUDGET_OPTIONS)} (command-line units) or a cost metric: {', '.join(COST_METRICS)}"


def _budget_value(name: str, value: object) -> float | str:
    if isinstance(value, str) and value.strip().endswith("%"):
        return value  # relative: checked by nas.core.budgets
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"budget {name} must be a number >= 0 or a percentage like '60%', got {value!r}")
    number = float(value)
    if math.isnan(number) or number < 0:
        raise ValueError(f"budget {name} must be a number >= 0 (inf means no bound), got {value!r}")
    return number


def parse_budgets(
    max_latency_ms: float | str | None = None,
    max_energy_mj: float | str | None = None,
    max_memory_access_mb: float | str | None = None,
    **others: float | str | None,
) -> dict[str, float | str]:
    """Budgets keyed by record metric (``latency_ms``, ``energy_mj``, ``memory_access_bytes``, ...).

    ``others`` are cost metrics by their record name, in record units (e.g. ``params=2e6``). ``None`` means no
    budget. An unknown name, a metric given twice, or a negative / NaN / non-numeric value raises ``ValueError``.
    """
    budgets: dict[str, float | str] = {}
    options = {"max_latency_ms": max_latency_ms, "max_energy_mj": max_energy_mj}
    options["max_memory_access_mb"] = max_memory_access_mb
    for option, value in options.items():
        if value is None:
            continue
        metric, factor = BUDGET_OPTIONS[option]
        bound = _budget_value(option, value)
        budgets[metric] = bound if isinstance(bound, str) else bound * factor
    for name, value in others.items():
        if name not in COST_METRICS:
            raise ValueError(f"unknown budget {name!r}; {_allowed_budgets_text()}")
        if value is None:
            continue
        if name in budgets:
            option = next(o for o, (m, _) in BUDGET_OPTIONS.items() if m == name)
            raise ValueError(f"budget on {name} given twice (as {option} and as {name}); give it once")
        budgets[name] = _budget_value(name, value)
    return budgets


def check_budgets(budgets: Mapping[str, Any], records: Iterable[CandidateRecord] = ()) -> dict[str, Budget]:
    """Budgets as :class:`nas.core.budgets.Budget` (floats): relative ones resolved against ``records``.

    A plain number may be 0 or ``inf`` (no bound); a percentage or a ``{max, confidence}`` mapping is parsed by
    :func:`nas.core.budgets.parse_budget`.
    """
    if not isinstance(budgets, Mapping):
        raise ValueError(f"budgets must be a mapping metric -> bound, got {type(budgets).__name__}")
    checked: dict[str, Budget] = {}
    others: dict[str, Any] = {}
    for name, value in budgets.items():
        if name not in COST_METRICS:
            raise ValueError(f"unknown budget metric {name!r}; allowed: {', '.join(COST_METRICS)}")
        if isinstance(value, Budget):
            checked[name] = value
        elif isinstance(value, (Mapping, str)):
            others[name] = value
        else:
            bound = _budget_value(name, value)
            checked[name] = bound if isinstance(bound, Budget) else Budget(float(bound), name)
    if others:
        checked.update(resolve_budgets(others, list(records)))
    return {name: checked[name] for name in budgets}


def _check_cost(cost: str) -> None:
    if cost not in COST_METRICS:
        raise ValueError(f"unknown cost metric {cost!r}; allowed: {', '.join(COST_METRICS)}")


def competing(records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
    """The records that compete: ``COMPLETE`` with a finite accuracy."""
    return [r for r in records if r.status == "COMPLETE" and math.isfinite(r.accuracy)]


def meets_budgets(record: CandidateRecord, budgets: Mapping[str, float]) -> bool:
    """True when every budgeted metric of ``record`` is known and within its bound.

    ``budgets`` are resolved bounds (:func:`check_budgets`); a latency budget with a confidence is checked on the
    latency quantile at that level.
    """
    values = record.budget_metrics()
    for metric, bound in budgets.items():
        value = budget_value(values, metric, getattr(bound, "confidence", None))
        if not (math.isfinite(value) and value <= bound):
            return False
    return True


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def by_accuracy(records: Iterable[CandidateRecord]) -> list[CandidateRecord]:
    """The competing candidates, most accurate first (ties: lower latency, then earlier trial)."""
    return sorted(competing(records), key=lambda r: (-r.accuracy, _finite_or_inf(r.latency_ms), r.trial))


def select_best(records: Iterable[CandidateRecord], budgets: Mapping[str, Any]) -> CandidateRecord | None:
    """The most accurate competing candidate that meets every budget, or ``None`` if none does.

    Relative budgets are resolved against ``records``.
    """
    pool = competing(records)
    checked = check_budgets(budgets, pool)
    eligible = [r for r in pool if meets_budgets(r, checked)]
    if not eligible:
        return None

    def rank(r: CandidateRecord) -> tuple[float, ...]:
        values = r.metrics()
        ties = [_finite_or_inf(values[m]) for m in checked]
        return (-r.accuracy, *ties, _finite_or_inf(r.latency_ms), float(r.trial))

    return min(eligible, key=rank)


def pareto_front(records: Iterable[CandidateRecord], cost: str) -> list[CandidateRecord]:
    """The non-dominated competing candidates on (accuracy up, ``cost`` down), sorted by ``cost``.

    Candidates whose ``cost`` is unknown (NaN) take no part.
    """
    _check_cost(cost)
    points = [(r, r.metrics()[cost]) for r in competing(records)]
    points = [(r, c) for r, c in points if math.isfinite(c)]
    points.sort(key=lambda p: (p[1], -p[0].accuracy, p[0].trial))
    front: list[CandidateRecord] = []
    best_accuracy, best_cost = -math.inf, math.nan
    for record, value in points:
        if record.accuracy > best_accuracy:
            front.append(record)
            best_accuracy, best_cost = record.accuracy, value
        elif record.accuracy == best_accuracy and value == best_cost:
            front.append(record)  # an exact duplicate of a front member is not dominated either
    return front


def pareto_set(records: Iterable[CandidateRecord], costs: Sequence[str]) -> list[CandidateRecord]:
    """The non-dominated competing candidates on accuracy (up) and every cost of ``costs`` (down) together.

    Candidates with an unknown value of any of ``costs`` take no part. Sorted by trial number.
    """
    for cost in costs:
        _check_cost(cost)
    pool = [r for r in competing(records) if all(math.isfinite(r.metrics()[c]) for c in costs)]
    if not pool:
        return []
    # Minimisation matrix: negated accuracy, then the costs.
    matrix = np.array([[-r.accuracy, *(r.metrics()[c] for c in costs)] for r in pool], dtype=float)
    keep: list[CandidateRecord] = []
    for i, record in enumerate(pool):
        no_worse = np.all(matrix <= matrix[i], axis=1)
        better = np.any(matrix < matrix[i], axis=1)
        if not np.any(no_worse & better):
            keep.append(record)
    return sorted(keep, key=lambda r: r.trial)
