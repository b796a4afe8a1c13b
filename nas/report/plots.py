"""Pareto-front plots of a search: accuracy (up) against one cost (down), one PNG per cost.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot, no backend switch, no display, no
process-wide state touched, so it is safe inside workers and tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from pathlib import Path

    from nas.search.records import CandidateRecord

__all__ = ["AXIS_SCALES", "ParetoPlot", "plot_pareto", "uses_log_scale"]

# How each cost is shown on an axis: (divide by, unit shown, axis label). Accuracy is shown in percent.
AXIS_SCALES: dict[str, tuple[float, str, str]] = {
    "latency_ms": (1.0, "ms", "latency, median (ms)"),
    "energy_mj": (1.0, "mJ", "energy per inference (mJ)"),
    "memory_access_bytes": (1e6, "MB", "memory access (MB, 1 MB = 10^6 bytes)"),
    "mult_adds": (1e6, "M", "mult-adds (millions)"),
    "params": (1e6, "M", "parameters (millions)"),
}


@dataclass(frozen=True)
class ParetoPlot:
    """What one plot shows: the points (record, cost) and which of them are special."""

    cost: str
    points: list[tuple[CandidateRecord, float]]  # competing candidates with a finite value of ``cost``
    front: list[CandidateRecord]  # non-dominated, sorted by cost
    over_budget: set[int]  # trial numbers of the candidates drawn as crosses (missing a budget)
    budget: float | None  # the budget on ``cost``, if any
    winner: CandidateRecord | None
    title: str
    inside_label: str = "within budgets"
    over_label: str = "over a budget"


def uses_log_scale(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) > 30.0


def plot_pareto(plot: ParetoPlot, path: Path, *, dpi: int = 110) -> Path:
    """Draw ``plot`` into the PNG file ``path`` and return it."""
    scale, unit, label = AXIS_SCALES.get(plot.cost, (1.0, "", plot.cost))
    fig = Figure(figsize=(8.6, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    inside = [(r, c / scale) for r, c in plot.points if r.trial not in plot.over_budget]
    outside = [(r, c / scale) for r, c in plot.points if r.trial in plot.over_budget]
    if inside:
        ax.scatter(
            [c for _, c in inside],
            [100.0 * r.accuracy for r, _ in inside],
            s=18,
            color="#8c8c8c",
            alpha=0.8,
            label=f"{plot.inside_label} ({len(inside)})",
            zorder=2,
        )
    if outside:
        ax.scatter(
            [c for _, c in outside],
            [100.0 * r.accuracy for r, _ in outside],
            s=26,
            marker="x",
            color="#d62728",
            alpha=0.8,
            label=f"{plot.over_label} ({len(outside)})",
            zorder=2,
        )
    cost_of = {r.trial: c for r, c in plot.points}
    if plot.front:
        xs = [cost_of[r.trial] / scale for r in plot.front]
        ys = [100.0 * r.accuracy for r in plot.front]
        ax.plot(xs, ys, drawstyle="steps-post", color="#1f77b4", linewidth=1.4, zorder=3)
        ax.scatter(xs, ys, s=34, color="#1f77b4", label=f"Pareto front ({len(plot.front)})", zorder=4)
    if plot.budget is not None and math.isfinite(plot.budget):
        shown = plot.budget / scale
        ax.axvline(
            shown, color="#d62728", linestyle="--", linewidth=1.2, label=f"budget ≤ {shown:.4g} {unit}", zorder=1
        )
    if plot.winner is not None and plot.winner.trial in cost_of:
        ax.scatter(
            [cost_of[plot.winner.trial] / scale],
            [100.0 * plot.winner.accuracy],
            s=260,
            facecolors="none",
            edgecolors="#2ca02c",
            linewidths=2.0,
            label=f"winner (trial {plot.winner.trial})",
            zorder=5,
        )

    if uses_log_scale([c for _, c in plot.points]):
        ax.set_xscale("log")
    ax.set_xlabel(f"{label}  (lower is better)")
    ax.set_ylabel("validation accuracy (%)  (higher is better)")
    ax.set_title(plot.title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0.0)  # outside: hides nothing
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
