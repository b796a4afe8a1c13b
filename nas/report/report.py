"""The search report: the winner first, then the budgets, its guideline audit, Pareto fronts, the top candidates, the run.

Selection rules (who competes, what meeting a budget means, ties, Pareto fronts) are in :mod:`nas.report.selection`
and re-exported here. Every section describes the one selected candidate: the pipeline passes the export and
profile of that candidate only. Outputs of :func:`write_report`, all in ``out_dir``: ``report.md`` (plots as PNG),
``report.html`` (self-contained: inline CSS, interactive plotly plots with plotly.js inlined once, no network) and
one ``pareto_<cost>.png`` per cost of :data:`PLOT_COSTS` that has at least one measured value (the others are named
in the text as skipped). Candidates are marked over budget only against the budgets that were set.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.metrics import COST_METRICS
from nas.report.format import (
    architecture_details,
    budget_text,
    candidate_blocks,
    comparison,
    fmt_metric,
    metrics_table,
    nobody_meets,
    who,
)
from nas.report.interactive import pareto_html
from nas.report.markup import (
    Block,
    Bullets,
    Heading,
    Image,
    Interactive,
    Para,
    Table,
    render_html,
    render_markdown,
)
from nas.report.plots import ParetoPlot, plot_pareto
from nas.report.ranking import trust_sections
from nas.report.sections import (
    RUN_INFO_KEYS,
    deploy_lines,
    export_section,
    library_versions,
    profile_section,
    run_section,
)
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
from nas.report.uncertainty import uncertainty_sections

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


def _winner_section(
    pool: Sequence[CandidateRecord],
    budgets: Mapping[str, float],
    best: CandidateRecord | None,
    run_info: Mapping[str, Any],
) -> tuple[list[Block], CandidateRecord | None]:
    """The first thing a reader sees: who won, under which budgets, with the numbers that decide, and where it is."""
    winner = select_best(pool, budgets) if budgets else best
    all_text = ", ".join(budget_text(m, b) for m, b in budgets.items())
    if best is None:
        return [Heading(2, "Winner"), Para("No candidate completed with an accuracy: there is nothing to select.")], None
    if winner is None:
        blocks: list[Block] = [Heading(2, "Winner: none within the budgets")]
        blocks.append(Para(f"No candidate meets all budgets at once ({all_text})."))
        blocks += [nobody_meets(pool, m, b) for m, b in budgets.items() if not any(meets_budgets(r, {m: b}) for r in pool)]
        blocks.append(Para(f"The export and audit below are of the most accurate candidate, {who(best)}."))
        blocks += [metrics_table(best), architecture_details(best)]
    else:
        why = f"the most accurate candidate within {all_text}" if budgets else "the most accurate candidate (no budgets were set)"
        blocks = [Heading(2, f"Winner: trial {winner.trial}"), Para(f"{who(winner)} is {why}.")]
        blocks += [metrics_table(winner), comparison(winner, best), architecture_details(winner)]
    blocks += deploy_lines(run_info)
    return blocks, winner


def _budget_sections(pool: Sequence[CandidateRecord], budgets: Mapping[str, float], best: CandidateRecord | None) -> list[Block]:
    """The budget table and, with several budgets, the best under each budget alone."""
    blocks: list[Block] = [Heading(2, "Budgets")]
    if not budgets:
        return [*blocks, Para("No budgets were set: the winner is the most accurate candidate, and no point is marked over budget.")]
    rows = tuple(
        (metric, fmt_metric(metric, bound), f"{sum(meets_budgets(r, {metric: bound}) for r in pool)} of {len(pool)}")
        for metric, bound in budgets.items()
    )
    blocks.append(Table(("metric", "budget (at most)", "candidates within it"), rows))
    if any(not math.isfinite(r.metrics()[m]) for r in pool for m in budgets):
        blocks.append(Para("A candidate with no measured value of a budgeted metric is counted as not meeting it."))
    if len(budgets) > 1 and best is not None:
        blocks.append(Heading(3, "Best under each budget alone"))
        for metric, bound in budgets.items():
            alone = select_best(pool, {metric: bound})
            if alone is None:
                blocks.append(nobody_meets(pool, metric, bound))
                continue
            blocks.append(Para(f"{budget_text(metric, bound)}: {who(alone)}, accuracy {fmt_metric('accuracy', alone.accuracy)}."))
            blocks += candidate_blocks(alone, best)
    return blocks


def _plot_sections(
    out_dir: Path,
    pool: Sequence[CandidateRecord],
    budgets: Mapping[str, float],
    winner: CandidateRecord | None,
) -> tuple[list[Block], dict[str, Path], tuple[str, ...]]:
    blocks: list[Block] = [Heading(2, "Pareto fronts")]
    over = {r.trial for r in pool if not meets_budgets(r, budgets)} if budgets else set()
    budget_words = ", ".join(budget_text(m, b) for m, b in budgets.items())
    labels = ("within budgets", f"over budget ({budget_words})") if budgets else ("candidates", "")
    note = (
        f"Red crosses: candidates over a budget that was set ({budget_words}); dashed line: the budget on the plotted cost."
        if budgets
        else "No budgets were set, so no candidate is marked over budget."
    )
    blocks.append(
        Para(f"Accuracy against each cost; blue: the Pareto front (step line); green ring: the winner. {note} "
             "In the HTML, hover a point for its trial and architecture; click legend entries to hide groups.")
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
        plot = ParetoPlot(
                cost=cost,
                points=known,
                front=front,
                over_budget=over,
                budget=budgets.get(cost),
                winner=winner,
                title=f"Accuracy vs {cost}: {len(known)} candidates, {len(front)} on the Pareto front",
                inside_label=labels[0],
                over_label=labels[1],
        )
        path = plot_pareto(plot, out_dir / f"pareto_{cost}.png")
        plots[cost] = path
        fragment = pareto_html(plot, include_plotlyjs=not plots.keys() - {cost}, div_id=f"pareto-{cost}")
        blocks.append(Interactive(fragment, Image(path, f"accuracy against {cost}")))
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
    winner_blocks, winner = _winner_section(pool, checked, best, run_info)
    blocks += winner_blocks
    blocks += _budget_sections(pool, checked, best)
    profile = run_info.get("winner_profile")
    described = winner or best
    if isinstance(profile, Mapping) and profile:
        blocks += profile_section(profile, described.arch_id if described is not None else None, run_info.get("latency_table"))
    blocks += trust_sections(out_dir)  # "Can this ranking be trusted?" and the fine-tuned winner, when run
    blocks += _summary(records, pool, run_info)
    plot_blocks, plots, skipped = _plot_sections(out_dir, pool, checked, winner)
    blocks += plot_blocks
    blocks += _top_table(pool, checked)
    blocks += uncertainty_sections(pool, checked, winner, run_info)
    blocks += _failed_section(records)
    export = run_info.get("export")
    if isinstance(export, Mapping) and export:
        blocks += export_section(export)
    blocks += run_section(run_info)

    markdown = out_dir / "report.md"
    html_path = out_dir / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    html_path.write_text(render_html(blocks, title), encoding="utf-8")
    return ReportPaths(markdown=markdown, html=html_path, plots=plots, skipped_plots=skipped)
