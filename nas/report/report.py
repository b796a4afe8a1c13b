"""The search report: the best candidate under the user's budgets, Pareto fronts, the top candidates, the run.

Selection rules (who competes, what meeting a budget means, ties, Pareto fronts) are in :mod:`nas.report.selection`
and re-exported here. Outputs of :func:`write_report`, all in ``out_dir``: ``report.md``, ``report.html``
(self-contained: inline CSS, plots embedded as base64) and one ``pareto_<cost>.png`` per cost of
:data:`PLOT_COSTS` that has at least one measured value (the others are named in the text as skipped).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.metrics import COST_METRICS
from nas.report.markup import Block, Bullets, Code, Heading, Image, Para, Table, render_html, render_markdown
from nas.report.plots import ParetoPlot, plot_pareto
from nas.report.sections import RUN_INFO_KEYS, export_section, library_versions, profile_section, run_section
from nas.report.selection import (
    BUDGET_OPTIONS,
    by_accuracy,
    check_budgets,
    competing,
    meets_budgets,
    pareto_front,
    pareto_set,
    parse_budgets,
    select_best,
)
from nas.report.uncertainty import accuracy_text, uncertainty_sections

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nas.search.records import CandidateRecord

__all__ = [
    "BUDGET_OPTIONS",
    "PLOT_COSTS",
    "ReportPaths",
    "competing",
    "fmt_metric",
    "library_versions",
    "meets_budgets",
    "pareto_front",
    "pareto_set",
    "parse_budgets",
    "select_best",
    "write_report",
]

# The costs that get a Pareto plot, in the order they appear in the report.
PLOT_COSTS: tuple[str, ...] = ("latency_ms", "mult_adds", "memory_access_bytes", "energy_mj")
_TOP_N = 10
_TOP_COLUMNS = ("accuracy", "latency_ms", "energy_mj", "memory_access_bytes", "mult_adds", "params", "elementwise_ops")
_MAX_FAILED_LISTED = 20


@dataclass(frozen=True)
class ReportPaths:
    """The files a report wrote. ``plots`` maps a cost to its PNG; ``skipped_plots`` had no values to draw."""

    markdown: Path
    html: Path
    plots: dict[str, Path] = field(default_factory=dict)
    skipped_plots: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "markdown": str(self.markdown),
            "html": str(self.html),
            "plots": {k: str(v) for k, v in self.plots.items()},
            "skipped_plots": list(self.skipped_plots),
        }


# --------------------------------------------------------------------------------------------------
# formatting
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


def _budget_text(metric: str, bound: float) -> str:
    origin = bound.describe() if hasattr(bound, "describe") else ""
    return f"{metric} ≤ {fmt_metric(metric, bound)}" + (f" ({origin})" if origin else "")


def _who(record: CandidateRecord) -> str:
    return f"trial {record.trial} (arch {record.arch_id})"


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def _metrics_table(record: CandidateRecord) -> Table:
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


def _comparison(record: CandidateRecord, best: CandidateRecord) -> Para:
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
        f"Against the most accurate candidate overall, {_who(best)} at "
        f"{fmt_metric('accuracy', best.accuracy)}: accuracy {diff:+.2f} points{ratio_text}."
    )


def _cheapest(pool: Sequence[CandidateRecord], metric: str) -> CandidateRecord | None:
    known = [r for r in pool if math.isfinite(r.metrics()[metric])]
    return min(known, key=lambda r: (r.metrics()[metric], -r.accuracy, r.trial)) if known else None


def _nobody_meets(pool: Sequence[CandidateRecord], metric: str, bound: float) -> Para:
    cheapest = _cheapest(pool, metric)
    if cheapest is None:
        return Para(f"No candidate meets {_budget_text(metric, bound)}: no candidate has a measured {metric} at all.")
    return Para(
        f"No candidate meets {_budget_text(metric, bound)}. The cheapest candidate found on {metric} is "
        f"{_who(cheapest)} at {fmt_metric(metric, cheapest.metrics()[metric])}, with accuracy "
        f"{fmt_metric('accuracy', cheapest.accuracy)}."
    )


def _candidate_blocks(record: CandidateRecord, best: CandidateRecord) -> list[Block]:
    return [_metrics_table(record), _comparison(record, best), Para("Architecture:"), Code(_json(record.arch), "json")]


# --------------------------------------------------------------------------------------------------
# report sections
# --------------------------------------------------------------------------------------------------
def _summary(
    records: Sequence[CandidateRecord], pool: Sequence[CandidateRecord], run_info: Mapping[str, Any]
) -> list[Block]:
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    complete = statuses.get("COMPLETE", 0)
    items = [
        f"trials: {len(records)}",
        f"complete: {complete}, of which {len(pool)} with an accuracy compete",
        f"failed: {statuses.get('FAIL', 0)}",
    ]
    items += [f"{status.lower()}: {n}" for status, n in sorted(statuses.items()) if status not in ("COMPLETE", "FAIL")]
    for key in ("engine", "sampler"):
        if run_info.get(key):
            items.append(f"{key}: {run_info[key]}")
    objectives = [str(o) for o in run_info.get("objectives") or []]
    if objectives:
        items.append(f"objectives: {', '.join(objectives)}")
        costs = [o for o in objectives if o in COST_METRICS]
        if costs:
            items.append(f"Pareto set on accuracy and {', '.join(costs)} together: {len(pareto_set(pool, costs))}")
    for cost in PLOT_COSTS:
        items.append(f"Pareto front on accuracy and {cost}: {len(pareto_front(pool, cost))}")
    return [Heading(2, "Summary"), Bullets(tuple(items))]


def _budget_sections(
    pool: Sequence[CandidateRecord], budgets: Mapping[str, float], best: CandidateRecord | None
) -> tuple[list[Block], CandidateRecord | None]:
    """The budget table, the winner under all budgets, and the best under each budget alone."""
    blocks: list[Block] = [Heading(2, "Budgets")]
    if not budgets:
        blocks.append(Para("No budgets were given: the winner is the most accurate candidate."))
        if best is not None:
            blocks += [Heading(2, "Winner: the most accurate candidate"), Para(f"{_who(best)}.")]
            blocks += [_metrics_table(best), Para("Architecture:"), Code(_json(best.arch), "json")]
        return blocks, best
    rows = tuple(
        (metric, fmt_metric(metric, bound), f"{sum(meets_budgets(r, {metric: bound}) for r in pool)} of {len(pool)}")
        for metric, bound in budgets.items()
    )
    blocks.append(Table(("metric", "budget (at most)", "candidates within it"), rows))
    if any(not math.isfinite(r.metrics()[m]) for r in pool for m in budgets):
        blocks.append(Para("A candidate with no measured value of a budgeted metric is counted as not meeting it."))

    winner = select_best(pool, budgets)
    all_text = ", ".join(_budget_text(m, b) for m, b in budgets.items())
    blocks.append(Heading(2, "Winner: best under all budgets at once"))
    if winner is None or best is None:
        blocks.append(Para(f"No candidate meets all budgets at once ({all_text})."))
        for metric, bound in budgets.items():
            if not any(meets_budgets(r, {metric: bound}) for r in pool):
                blocks.append(_nobody_meets(pool, metric, bound))
    else:
        blocks.append(
            Para(
                f"{_who(winner)} is the most accurate candidate within {all_text}: "
                f"accuracy {fmt_metric('accuracy', winner.accuracy)}."
            )
        )
        blocks += _candidate_blocks(winner, best)

    if len(budgets) > 1:
        blocks.append(Heading(2, "Best under each budget alone"))
        for metric, bound in budgets.items():
            blocks.append(Heading(3, _budget_text(metric, bound)))
            alone = select_best(pool, {metric: bound})
            if alone is None or best is None:
                blocks.append(_nobody_meets(pool, metric, bound))
                continue
            blocks.append(Para(f"{_who(alone)}: accuracy {fmt_metric('accuracy', alone.accuracy)}."))
            blocks += _candidate_blocks(alone, best)
    return blocks, winner


def _plot_sections(
    out_dir: Path,
    pool: Sequence[CandidateRecord],
    budgets: Mapping[str, float],
    winner: CandidateRecord | None,
) -> tuple[list[Block], dict[str, Path], tuple[str, ...]]:
    blocks: list[Block] = [Heading(2, "Pareto fronts")]
    if budgets:
        over = {r.trial for r in pool if not meets_budgets(r, budgets)}
        labels = ("within budgets", "over a budget")
        note = "Crosses: candidates that miss at least one budget; dashed line: the budget on the plotted cost."
    else:
        over = {r.trial for r in pool if not r.feasible}
        labels = ("candidates", "infeasible in the search")
        note = "Crosses: candidates the search itself marked infeasible (no budgets were given to the report)."
    blocks.append(
        Para(f"Accuracy against each cost; blue: the Pareto front (step line); green circle: the winner. {note}")
    )
    plots: dict[str, Path] = {}
    skipped: list[str] = []
    for cost in PLOT_COSTS:
        blocks.append(Heading(3, f"Accuracy against {cost}"))
        points = [(r, r.metrics()[cost]) for r in pool]
        known = [(r, v) for r, v in points if math.isfinite(v)]
        if not known:
            skipped.append(cost)
            blocks.append(Para(f"No plot: no competing candidate has a measured {cost} (all values are NaN)."))
            continue
        front = pareto_front(pool, cost)
        path = plot_pareto(
            ParetoPlot(
                cost=cost,
                points=known,
                front=front,
                over_budget=over,
                budget=budgets.get(cost),
                winner=winner,
                title=f"Accuracy vs {cost}: {len(known)} candidates, {len(front)} on the Pareto front",
                inside_label=labels[0],
                over_label=labels[1],
            ),
            out_dir / f"pareto_{cost}.png",
        )
        plots[cost] = path
        blocks.append(Image(path, f"accuracy against {cost}"))
        if len(known) < len(points):
            blocks.append(Para(f"{len(points) - len(known)} candidate(s) have no measured {cost} and are not drawn."))
        rows = tuple(
            (str(r.trial), r.arch_id, fmt_metric("accuracy", r.accuracy), fmt_metric(cost, r.metrics()[cost]))
            for r in front
        )
        blocks.append(Table(("trial", "arch_id", "accuracy", cost), rows))
    return blocks, plots, tuple(skipped)


def _top_table(pool: Sequence[CandidateRecord], budgets: Mapping[str, float]) -> list[Block]:
    ranked = by_accuracy(pool)[:_TOP_N]
    header = ("rank", "trial", "arch_id", *_TOP_COLUMNS, "within budgets")
    rows = []
    for rank, r in enumerate(ranked, start=1):
        m = r.metrics()
        within = ("yes" if meets_budgets(r, budgets) else "no") if budgets else "-"
        values = (fmt_metric(k, m[k]) for k in _TOP_COLUMNS)
        rows.append((str(rank), str(r.trial), r.arch_id, *values, within))
    title = f"Top {len(ranked)} candidates by accuracy"
    if not ranked:
        return [Heading(2, title), Para("No candidate completed with an accuracy.")]
    return [Heading(2, title), Table(header, tuple(rows))]


def _failed_section(records: Sequence[CandidateRecord]) -> list[Block]:
    failed = [r for r in records if r.status == "FAIL"]
    if not failed:
        return []
    rows = tuple(
        (str(r.trial), r.arch_id, (r.error.strip().splitlines() or [""])[0][:200])
        for r in sorted(failed, key=lambda r: r.trial)[:_MAX_FAILED_LISTED]
    )
    blocks: list[Block] = [Heading(2, "Failed trials"), Para(f"{len(failed)} trial(s) failed.")]
    blocks.append(Table(("trial", "arch_id", "error (first line)"), rows))
    if len(failed) > _MAX_FAILED_LISTED:
        blocks.append(Para(f"Only the first {_MAX_FAILED_LISTED} are listed; trials.csv has them all."))
    return blocks


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def write_report(
    out_dir: Path,
    records: list[CandidateRecord],
    *,
    budgets: Mapping[str, Any],
    run_info: dict[str, Any],
) -> ReportPaths:
    """Write ``report.md``, ``report.html`` and the Pareto plots of ``records`` into ``out_dir``.

    ``budgets`` are in record units (see :func:`parse_budgets`); relative ones are resolved against ``records``. ``run_info`` keys, all optional: ``config``,
    ``device``, ``versions``, ``timings`` (seconds), ``winner_profile`` (with ``guidelines``: a list of dicts
    with ``guideline`` and ``message``), ``objectives``, ``engine``, ``sampler``; any other key is shown as JSON.
    """
    if not isinstance(run_info, Mapping):
        raise ValueError(
            f"run_info must be a mapping (keys: {', '.join(RUN_INFO_KEYS)}), got {type(run_info).__name__}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = competing(records)
    checked = check_budgets(budgets, pool)  # relative budgets resolved against the candidates
    best = select_best(pool, {})

    config = run_info.get("config")
    name = config.get("name") if isinstance(config, Mapping) else None
    title = f"Search report: {name}" if name else "Search report"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    blocks: list[Block] = [Heading(1, title), Para(f"Written {stamp}.")]
    blocks += _summary(records, pool, run_info)
    budget_blocks, winner = _budget_sections(pool, checked, best)
    blocks += budget_blocks
    if best is not None and (winner is None or winner.trial != best.trial):
        blocks.append(Heading(2, "Most accurate candidate (no budget)"))
        blocks += [Para(f"{_who(best)}."), _metrics_table(best), Para("Architecture:"), Code(_json(best.arch), "json")]
    elif best is None:
        blocks.append(Para("No candidate completed with an accuracy: there is nothing to select."))
    plot_blocks, plots, skipped = _plot_sections(out_dir, pool, checked, winner)
    blocks += plot_blocks
    blocks += _top_table(pool, checked)
    blocks += uncertainty_sections(pool, checked, winner, run_info)
    blocks += _failed_section(records)
    profile = run_info.get("winner_profile")
    if isinstance(profile, Mapping) and profile:
        blocks += profile_section(profile, winner.arch_id if winner is not None else None)
    export = run_info.get("export")
    if isinstance(export, Mapping) and export:
        blocks += export_section(export)
    blocks += run_section(run_info)

    markdown = out_dir / "report.md"
    html_path = out_dir / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    html_path.write_text(render_html(blocks, title), encoding="utf-8")
    return ReportPaths(markdown=markdown, html=html_path, plots=plots, skipped_plots=skipped)
