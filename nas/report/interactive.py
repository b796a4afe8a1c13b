"""Interactive Pareto plots for the HTML report: the same :class:`~nas.report.plots.ParetoPlot` as the PNG, in plotly.

Hovering a point shows its trial, architecture id, accuracy and cost; the legend toggles groups; zoom and pan work
offline: the first plot of a page inlines plotly.js (``include_plotlyjs=True``), the others reuse it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nas.report.plots import AXIS_SCALES, ParetoPlot, uses_log_scale

if TYPE_CHECKING:
    from nas.search.records import CandidateRecord

__all__ = ["pareto_html"]

_COLOURS = {"inside": "#8c8c8c", "over": "#d62728", "front": "#1f77b4", "winner": "#2ca02c"}


def _hover(records: list[tuple[CandidateRecord, float]], unit: str) -> list[str]:
    return [
        f"trial {r.trial}<br>arch {r.arch_id}<br>accuracy {100.0 * r.accuracy:.2f} %<br>{c:.4g} {unit}"
        for r, c in records
    ]


def pareto_html(plot: ParetoPlot, *, include_plotlyjs: bool, div_id: str) -> str:
    """A self-contained HTML fragment (a div and its script) drawing ``plot``."""
    import plotly.graph_objects as go

    scale, unit, label = AXIS_SCALES.get(plot.cost, (1.0, "", plot.cost))
    shown = [(r, c / scale) for r, c in plot.points]
    inside = [(r, c) for r, c in shown if r.trial not in plot.over_budget]
    outside = [(r, c) for r, c in shown if r.trial in plot.over_budget]
    fig = go.Figure()

    def scatter(points: list[tuple[CandidateRecord, float]], name: str, **style: Any) -> None:
        fig.add_trace(
            go.Scatter(
                x=[c for _, c in points],
                y=[100.0 * r.accuracy for r, _ in points],
                name=f"{name} ({len(points)})",
                text=_hover(points, unit),
                hoverinfo="text",
                **style,
            )
        )

    if inside:
        scatter(inside, plot.inside_label, mode="markers", marker={"color": _COLOURS["inside"], "size": 7, "opacity": 0.8})
    if outside:
        scatter(outside, plot.over_label, mode="markers",
                marker={"color": _COLOURS["over"], "size": 8, "symbol": "x", "opacity": 0.8})
    cost_of = {r.trial: c for r, c in shown}
    front = [(r, cost_of[r.trial]) for r in plot.front if r.trial in cost_of]
    if front:
        scatter(front, "Pareto front", mode="lines+markers", line={"shape": "hv", "color": _COLOURS["front"]},
                marker={"color": _COLOURS["front"], "size": 9})
    if plot.winner is not None and plot.winner.trial in cost_of:
        scatter([(plot.winner, cost_of[plot.winner.trial])], f"winner, trial {plot.winner.trial}", mode="markers",
                marker={"size": 20, "color": "rgba(0,0,0,0)", "line": {"color": _COLOURS["winner"], "width": 3}})
    if plot.budget is not None and math.isfinite(plot.budget):
        fig.add_vline(x=plot.budget / scale, line_dash="dash", line_color=_COLOURS["over"],
                      annotation_text=f"budget ≤ {plot.budget / scale:.4g} {unit}", annotation_position="top")
    fig.update_layout(
        title={"text": plot.title, "font": {"size": 14}},
        xaxis_title=f"{label} (lower is better)",
        yaxis_title="validation accuracy (%) (higher is better)",
        template="plotly_white",
        height=440,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "v", "x": 1.02, "y": 1.0},
    )
    if uses_log_scale([c for _, c in plot.points]):
        fig.update_xaxes(type="log")
    html: str = fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs, div_id=div_id,
                            config={"displaylogo": False, "responsive": True})
    return html
