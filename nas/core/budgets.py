"""Budgets: upper bounds on cost metrics, absolute or relative to what was measured, optionally with a confidence.

Syntax (the ``budgets`` mapping of the ``search`` and ``report`` sections, metric -> budget):

- ``latency_ms: 1.1`` -- absolute, in the metric's unit. Met when the value (for latency: the median) is at most 1.1.
- ``latency_ms: 60%`` -- relative (report budgets only): 60 % of the value of the *most accurate* candidate of the
  run, resolved when the report is written. ``latency_ms: 125% of fastest`` (``cheapest`` for any metric): 1.25x
  the lowest value any candidate reached, which at least that candidate always meets. Ratios between networks
  carry over from one CPU to another far better than absolute times, so a relative budget means the same thing
  on any machine, and the default uses one (of the fastest, so that the first run always ends with a winner:
  in the default run the most accurate candidate was also among the fastest, 0.87x its latency being the
  fastest of all, so 60 % of it was met by nobody). The search cannot use relative budgets: the candidates they
  refer to are known only at the end.
- ``latency_ms: {max: 1.0, confidence: 0.95}`` (``max`` may be relative too, e.g. ``{max: 60%, confidence: 0.9}``)
  -- latency only: met when P(latency <= max) >= confidence, read from the candidate's timing quantiles
  (``profilers.timing``), i.e. when its ``confidence`` quantile is at most ``max``. Without a confidence a
  latency budget is on the median (confidence 0.5).

A resolved budget is a :class:`Budget`: a ``float`` (its absolute bound, so it compares and formats as one)
that also says where it came from. :func:`budget_value` is the value of a candidate a budget is checked
against; a value too close to its bound to call is one within :data:`CLOSE_CALL` of it (:func:`too_close`).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from nas.core.metrics import COST_METRICS

__all__ = [
    "CLOSE_CALL",
    "REFERENCES",
    "Budget",
    "BudgetSpec",
    "budget_value",
    "normalise_budgets",
    "parse_budget",
    "resolve_budgets",
    "too_close",
]

# Two timings of the same network on this project's machines (five `nas profile` runs in a row, candidates
# re-timed by `nas export`) differ by up to about this share: a candidate within it of a latency budget could land
# on the other side if measured again. See results/benchmarks/timing_repeatability.json.
CLOSE_CALL = 0.05

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*(?:of\s+([a-z_]+)\s*)?$")
# What a relative budget is a share of: the most accurate candidate's value, or the lowest value of any candidate.
REFERENCES: dict[str, str] = {"most_accurate": "most_accurate", "cheapest": "cheapest", "fastest": "cheapest"}


class _Record(Protocol):
    trial: int
    accuracy: float
    status: str

    def metrics(self) -> dict[str, float]: ...


class BudgetSpec:
    """A parsed budget before resolution: an absolute bound or a share, and an optional confidence."""

    __slots__ = ("confidence", "metric", "reference", "share", "text", "value")

    def __init__(
        self,
        metric: str,
        value: float | None,
        share: float | None,
        confidence: float | None,
        reference: str = "most_accurate",
        text: str = "",
    ) -> None:
        self.metric, self.value, self.share, self.confidence = metric, value, share, confidence
        self.reference, self.text = reference, text

    @property
    def relative(self) -> bool:
        return self.share is not None

    def raw(self) -> float | str | dict[str, Any]:
        """The budget as the configuration writes it."""
        bound: float | str = self.text if self.share is not None else float(self.value or 0.0)
        if self.confidence is None:
            return bound
        return {"max": bound, "confidence": self.confidence}


class Budget(float):
    """A resolved budget: the absolute bound (this float) with its metric, origin and confidence.

    ``share`` and ``reference_*`` say what a relative budget was resolved against; ``confidence`` (latency only)
    asks P(latency <= bound) >= confidence.
    """

    metric: str
    share: float | None
    reference: str
    confidence: float | None
    reference_trial: int | None
    reference_value: float

    def __new__(
        cls,
        bound: float,
        metric: str = "",
        *,
        share: float | None = None,
        reference: str = "most_accurate",
        confidence: float | None = None,
        reference_trial: int | None = None,
        reference_value: float = math.nan,
    ) -> Budget:
        obj = super().__new__(cls, bound)
        obj.metric, obj.share, obj.confidence, obj.reference = metric, share, confidence, reference
        obj.reference_trial, obj.reference_value = reference_trial, reference_value
        return obj

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (float(self), self.metric, self.share, self.reference, self.confidence, self.reference_trial, self.reference_value),
        )

    def describe(self) -> str:
        """Where the bound comes from and what meeting it means, for people (empty for a plain absolute bound)."""
        parts = []
        if self.share is not None:
            who = f"trial {self.reference_trial}" if self.reference_trial is not None else "none yet"
            whose = "the most accurate candidate's" if self.reference == "most_accurate" else "the lowest of any candidate"
            parts.append(f"{self.share:.0%} of {whose} ({who}, {self.reference_value:.4g})")
        if self.confidence is not None:
            parts.append(f"with {self.confidence:.0%} confidence")
        return ", ".join(parts)


def _rebuild(
    bound: float, metric: str, share: float | None, reference: str, confidence: float | None, trial: int | None, ref: float
) -> Budget:
    return Budget(
        bound, metric, share=share, reference=reference, confidence=confidence, reference_trial=trial, reference_value=ref
    )


def _bound(metric: str, value: object, where: str) -> tuple[float | None, float | None, str, str]:
    """(absolute value, share, reference, text) of a budget's bound: a positive number or a percentage string."""
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if not match:
            raise ValueError(
                f"budget {metric}{where}: {value!r} is not a number or a percentage; write e.g. 1.1, '60%' or "
                "'125% of fastest'"
            )
        share = float(match.group(1)) / 100.0
        if not 0 < share <= 10:
            raise ValueError(f"budget {metric}{where}: a relative budget must be above 0% and at most 1000%, got {value!r}")
        reference = REFERENCES.get(match.group(2) or "most_accurate")
        if reference is None:
            raise ValueError(
                f"budget {metric}{where}: {value!r} is a share of an unknown reference {match.group(2)!r}; "
                f"allowed: {', '.join(REFERENCES)}"
            )
        text = f"{match.group(1)}%" + (f" of {match.group(2)}" if match.group(2) else "")
        return None, share, reference, text
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0 or math.isnan(float(value)):
        raise ValueError(f"budget {metric}{where} must be a positive number or a percentage like '60%', got {value!r}")
    if math.isinf(float(value)):
        raise ValueError(
            f"budget {metric}{where} must be a finite positive number or a percentage (leave it out for no bound), "
            f"got {value!r}"
        )
    return float(value), None, "most_accurate", ""


def parse_budget(metric: str, raw: object) -> BudgetSpec:
    """Parse one budget of the configuration (see the module docstring); ``ValueError`` says what is wrong."""
    if metric not in COST_METRICS:
        raise ValueError(f"unknown budget metric {metric!r}; allowed: {list(COST_METRICS)}")
    if isinstance(raw, Budget):
        return BudgetSpec(metric, float(raw), None, raw.confidence)
    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"max", "confidence"})
        if unknown or "max" not in raw:
            raise ValueError(
                f"budget {metric}: a mapping takes 'max' (required) and 'confidence', got keys {sorted(raw)}; "
                "e.g. {max: 1.0, confidence: 0.95}"
            )
        value, share, reference, text = _bound(metric, raw["max"], ".max")
        confidence = raw.get("confidence")
        if confidence is not None:
            if metric != "latency_ms":
                raise ValueError(
                    f"budget {metric}: only latency_ms is measured as a distribution, so only it takes a confidence"
                )
            if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0.5 <= float(confidence) < 1:
                raise ValueError(
                    f"budget {metric}.confidence must be a probability in [0.5, 1), e.g. 0.95, got {confidence!r}"
                )
            confidence = float(confidence)
        return BudgetSpec(metric, value, share, confidence, reference, text)
    value, share, reference, text = _bound(metric, raw, "")
    return BudgetSpec(metric, value, share, None, reference, text)


def normalise_budgets(budgets: Mapping[str, Any], *, allow_relative: bool = True) -> dict[str, Any]:
    """Validate a ``budgets`` mapping and return it as the configuration keeps it (numbers, 'N%', mappings)."""
    if not isinstance(budgets, Mapping):
        raise ValueError(f"budgets must be a mapping metric -> bound, got {type(budgets).__name__}")
    out: dict[str, Any] = {}
    for metric, raw in budgets.items():
        spec = parse_budget(metric, raw)
        if spec.relative and not allow_relative:
            raise ValueError(
                f"budget {metric}: a relative budget ({raw!r}) is resolved against the most accurate candidate, "
                "known only when the search is over: give the search an absolute bound, or put the relative one "
                "in report.budgets"
            )
        out[metric] = spec.raw()
    return out


def _most_accurate(records: Iterable[_Record]) -> _Record | None:
    pool = [r for r in records if r.status == "COMPLETE" and math.isfinite(r.accuracy)]
    if not pool:
        return None

    def key(r: _Record) -> tuple[float, float, int]:
        latency = r.metrics().get("latency_ms", math.nan)
        return (-r.accuracy, latency if math.isfinite(latency) else math.inf, r.trial)

    return min(pool, key=key)


def _cheapest(records: Iterable[_Record], metric: str) -> _Record | None:
    known = [
        r
        for r in records
        if r.status == "COMPLETE" and math.isfinite(r.accuracy) and math.isfinite(r.metrics().get(metric, math.nan))
    ]
    return min(known, key=lambda r: (r.metrics()[metric], -r.accuracy, r.trial)) if known else None


def resolve_budgets(budgets: Mapping[str, Any], records: Iterable[_Record] = ()) -> dict[str, Budget]:
    """Every budget as a :class:`Budget`: relative ones resolved against ``records``.

    A relative budget with no candidate to resolve it against, or whose reference value is unknown, is NaN:
    nobody meets it.
    """
    pool = list(records)
    resolved: dict[str, Budget] = {}
    for metric, raw in budgets.items():
        spec = parse_budget(metric, raw)
        if spec.share is None:
            assert spec.value is not None
            resolved[metric] = Budget(spec.value, metric, confidence=spec.confidence)
            continue
        reference = _most_accurate(pool) if spec.reference == "most_accurate" else _cheapest(pool, metric)
        ref_value = reference.metrics().get(metric, math.nan) if reference is not None else math.nan
        bound = spec.share * ref_value if math.isfinite(ref_value) else math.nan
        resolved[metric] = Budget(
            bound,
            metric,
            share=spec.share,
            reference=spec.reference,
            confidence=spec.confidence,
            reference_trial=reference.trial if reference is not None else None,
            reference_value=ref_value,
        )
    return resolved


def budget_value(metrics: Mapping[str, Any], metric: str, confidence: float | None = None) -> float:
    """The value of a candidate a budget on ``metric`` is checked against.

    With a ``confidence`` (latency): the candidate's latency quantile at that level (``latency_quantiles``, every
    5 %), so that the budget is met exactly when P(latency <= bound) >= confidence; without quantiles (records
    of older runs) the 90th percentile stands in for any confidence above one half. Otherwise the value itself.
    """
    from profilers.timing import QUANTILE_LEVELS, quantile_at

    value = metrics.get(metric, math.nan)
    if confidence is None or metric != "latency_ms":
        return float(value) if isinstance(value, numbers.Real) else math.nan
    quantiles = metrics.get("latency_quantiles") or []
    if len(quantiles) == len(QUANTILE_LEVELS):
        return float(quantile_at([float(q) for q in quantiles], confidence))
    return float(metrics.get("latency_p90_ms", math.nan))


def too_close(value: float, bound: float, tolerance: float = CLOSE_CALL) -> bool:
    """Whether ``value`` is within ``tolerance`` (a share of the bound) of ``bound``: too close to call."""
    return math.isfinite(value) and math.isfinite(bound) and bound > 0 and abs(value - bound) <= tolerance * bound
