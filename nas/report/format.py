"""Numbers and candidates as people read them: units, budgets, a candidate's metrics table and comparisons.

Shared by the report's sections (:mod:`nas.report.report`); pure functions of records, no files.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from nas.core.metrics import COST_METRICS
from nas.report.markup import Block, Code, Details, Para, Table
from nas.report.uncertainty import accuracy_text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nas.search.records import CandidateRecord

__all__ = [
    "architecture_details",
    "budget_text",
    "candidate_blocks",
    "cheapest",
    "comparison",
    "fmt_metric",
    "metrics_table",
    "nobody_meets",
    "who",
]

# --------------------------------------------------------------------------------------------------
_NA = "n/a"


def _count(value: float) -> str:
    if not math.isfinite(value):
        return _NA
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= bound:
            return f"{value / bound:.4g} {suffix}"
    return f"{value:.4g}"


def fmt_metric(metric: str, value: float) -> str:
    """``value`` of ``metric`` with its unit, for people."""
    if not math.isfinite(value):
        return _NA
    if metric == "accuracy":
        return f"{100.0 * value:.2f} %"
    if metric == "latency_ms":
        return f"{value:.4g} ms"
    if metric == "energy_mj":
        return f"{value:.4g} mJ"
    if metric == "memory_access_bytes":
        return f"{value / 1e6:.4g} MB"
    return _count(value)


def budget_text(metric: str, bound: float) -> str:
    origin = bound.describe() if hasattr(bound, "describe") else ""  # a relative budget says what it is a share of
    return f"{metric} ≤ {fmt_metric(metric, bound)}" + (f" ({origin})" if origin else "")


def who(record: CandidateRecord) -> str:
    return f"trial {record.trial} (arch {record.arch_id})"


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def metrics_table(record: CandidateRecord) -> Table:
    latency = fmt_metric("latency_ms", record.latency_ms)
    if math.isfinite(record.latency_p10_ms) and math.isfinite(record.latency_p90_ms):
        latency += f" (p10 {record.latency_p10_ms:.4g}, p90 {record.latency_p90_ms:.4g})"
    if record.latency_backend:
        latency += f", {record.latency_backend}"
    energy = fmt_metric("energy_mj", record.energy_mj)
    if record.energy_source:
        energy += f" ({record.energy_source})"
    rows = [
        ("trial", str(record.trial)),
        ("arch_id", record.arch_id),
        ("accuracy (validation)", accuracy_text(record)),
        ("latency_ms (median)", latency),
        ("energy_mj", energy),
        ("memory_access_bytes", fmt_metric("memory_access_bytes", float(record.memory_access_bytes))),
        ("mult_adds", fmt_metric("mult_adds", float(record.mult_adds))),
        ("params", fmt_metric("params", float(record.params))),
        ("elementwise_ops", fmt_metric("elementwise_ops", float(record.elementwise_ops))),
    ]
    if record.worker:
        rows.append(("worker", record.worker))
    if math.isfinite(record.duration_s):
        rows.append(("evaluation time", f"{record.duration_s:.3g} s"))
    return Table(("metric", "value"), tuple(rows))


def comparison(record: CandidateRecord, best: CandidateRecord) -> Para:
    if record.trial == best.trial:
        return Para("It is also the most accurate candidate overall: these budgets cost no accuracy.")
    diff = 100.0 * (record.accuracy - best.accuracy)
    ratios = []
    mine, theirs = record.metrics(), best.metrics()
    for metric in COST_METRICS:
        if math.isfinite(mine[metric]) and math.isfinite(theirs[metric]) and theirs[metric] > 0:
            ratios.append(f"{metric} {mine[metric] / theirs[metric]:.3g}×")
    ratio_text = "; cost ratios (this / most accurate): " + ", ".join(ratios) if ratios else ""
    return Para(
        f"Against the most accurate candidate overall, {who(best)} at "
        f"{fmt_metric('accuracy', best.accuracy)}: accuracy {diff:+.2f} points{ratio_text}."
    )


def cheapest(pool: Sequence[CandidateRecord], metric: str) -> CandidateRecord | None:
    known = [r for r in pool if math.isfinite(r.metrics()[metric])]
    return min(known, key=lambda r: (r.metrics()[metric], -r.accuracy, r.trial)) if known else None


def nobody_meets(pool: Sequence[CandidateRecord], metric: str, bound: float) -> Para:
    found = cheapest(pool, metric)
    if found is None:
        return Para(f"No candidate meets {budget_text(metric, bound)}: no candidate has a measured {metric} at all.")
    return Para(
        f"No candidate meets {budget_text(metric, bound)}. The cheapest candidate found on {metric} is "
        f"{who(found)} at {fmt_metric(metric, found.metrics()[metric])}, with accuracy "
        f"{fmt_metric('accuracy', found.accuracy)}."
    )


def candidate_blocks(record: CandidateRecord, best: CandidateRecord) -> list[Block]:
    return [metrics_table(record), comparison(record, best), architecture_details(record)]


def architecture_details(record: CandidateRecord) -> Details:
    """The architecture's values, collapsed: the decision is read from the numbers, the build from this."""
    return Details(f"Architecture of trial {record.trial} ({len(record.arch)} choices)", (Code(_json(record.arch), "json"),))
