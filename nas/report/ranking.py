"""Report sections "Can this ranking be trusted?" and "Fine-tuned winner", read from the run directory.

``nas rank`` writes ``ranking.json`` and ``nas finetune`` writes ``finetune/finetune.json`` into the run directory
(the report is a stage below them and reads their files, it does not import them). A run without them gets a
short paragraph saying how to produce them. The scatter plot (supernet accuracy against standalone accuracy, one
point per architecture, seeds as bars) is drawn on a bare Agg figure, like the Pareto plots.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nas.report.markup import Block, Bullets, Heading, Image, Para, Table

__all__ = ["finetune_section", "ranking_section", "trust_sections"]

_RANKING = "ranking.json"
_FINETUNE = Path("finetune") / "finetune.json"
_PLOT = "ranking_scatter.png"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _corr(value: Any) -> str:
    if not isinstance(value, Mapping) or value.get("value") is None:
        return "n/a"
    text = f"{value['value']:+.2f}"
    if value.get("low") is not None and value.get("high") is not None:
        text += f" [{value['low']:+.2f}, {value['high']:+.2f}]"
    return text


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "n/a"


def _scatter(out_dir: Path, rows: list[Mapping[str, Any]]) -> Path:
    fig = Figure(figsize=(5.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for row in rows:
        x, seeds = 100 * row["supernet_accuracy"], [100 * v for v in row["standalone"]]
        y = sum(seeds) / len(seeds)
        ax.plot([x, x], [min(seeds), max(seeds)], color="#999999", lw=1)
        ax.plot([100 * row["inherited_accuracy"]], [y], "x", color="#bbbbbb", ms=5)
        ax.plot([x], [y], "*" if row.get("winner") else "o", color="#d62728" if row.get("winner") else "#1f77b4",
                ms=12 if row.get("winner") else 6)
    ax.set_xlabel("supernet accuracy, BN recalibrated (%)  [x: inherited BN]")
    ax.set_ylabel("standalone accuracy, mean of seeds (%)")
    ax.set_title("supernet vs standalone (bars: seed range, star: winner)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / _PLOT
    fig.savefig(path, dpi=110)
    return path


def ranking_section(out_dir: Path, ranking: Mapping[str, Any] | None) -> list[Block]:
    """The verdict, the figures with their intervals, the scatter plot and the table of architectures."""
    blocks: list[Block] = [Heading(2, "Can this ranking be trusted?")]
    if ranking is None:
        blocks.append(Para(f"Not checked yet: 'nas rank --run {out_dir}' trains a spread of candidates from "
                           "scratch and says how well the supernet's order agrees with theirs."))
        return blocks
    rows = [r for r in ranking.get("archs", []) if isinstance(r, Mapping)]
    reason = str(ranking.get("reason", ""))
    blocks.append(Para(f"Verdict: {str(ranking.get('verdict', 'unknown')).upper()}. {reason[:1].upper()}{reason[1:]}"))
    items = [
        f"{len(rows)} of {ranking.get('planned_archs', len(rows))} architectures spread over the supernet's accuracy "
        f"range, each trained from scratch with {ranking.get('seeds')} seed(s) for {ranking.get('epochs')} epoch(s) "
        "and scored on the validation split; intervals: 95 % bootstrap over architectures.",
        f"Kendall tau, supernet vs standalone: {_corr(ranking.get('kendall_tau'))}; Spearman rho: "
        f"{_corr(ranking.get('spearman_rho'))}.",
        f"Seed-noise ceiling (tau between two standalone seeds): {_corr(ranking.get('seed_ceiling'))}.",
        f"Without BN recalibration (DetNAS ablation): tau {_corr(ranking.get('kendall_tau_inherited'))}, rho "
        f"{_corr(ranking.get('spearman_rho_inherited'))}.",
    ]
    if ranking.get("top_k_overlap") is not None:
        items.append(f"Top-{ranking.get('top_k')} overlap: {100 * ranking['top_k_overlap']:.0f} % of the supernet's "
                     f"best {ranking.get('top_k')} are among standalone training's best {ranking.get('top_k')}.")
    if ranking.get("winner_standalone_rank") is not None:
        items.append(f"The search's winner ranks {ranking['winner_standalone_rank']} of {len(rows)} in standalone "
                     "training.")
    if ranking.get("standalone_spread") is not None:
        items.append(f"Standalone accuracies span {_pct(ranking['standalone_spread'])} points.")
    if not ranking.get("complete", True):
        items.append("Some trainings have not finished: rerun 'nas rank' to complete them.")
    blocks.append(Bullets(tuple(items)))
    if rows:
        blocks.append(Image(_scatter(out_dir, rows), "supernet against standalone accuracy"))
        table = tuple(
            (str(r.get("trial")), str(r.get("arch_id")) + (" (winner)" if r.get("winner") else ""),
             _pct(r.get("supernet_accuracy")), _pct(r.get("inherited_accuracy")),
             ", ".join(_pct(v) for v in r.get("standalone", [])))
            for r in rows
        )
        header = ("trial", "arch_id", "supernet (%)", "inherited BN (%)", "standalone per seed (%)")
        blocks.append(Table(header, table))
    return blocks


def finetune_section(finetune: Mapping[str, Any] | None) -> list[Block]:
    """Search-time, inherited, fine-tuned (validation) and test accuracy side by side."""
    if finetune is None:
        return []
    val, test = finetune.get("val_accuracy_finetuned", {}), finetune.get("test_accuracy", {})
    recipe = finetune.get("recipe", {})
    blocks: list[Block] = [Heading(2, "Fine-tuned winner")]
    blocks.append(Para(
        f"Trial {finetune.get('trial')} (arch {finetune.get('arch_id')}), trained from "
        f"{'the supernet' if finetune.get('init') == 'supernet' else 'scratch'} for {recipe.get('epochs')} epochs "
        f"(lr {recipe.get('lr')}, label smoothing {recipe.get('label_smoothing')}, mixup alpha "
        f"{recipe.get('mixup_alpha')}, distillation weight {recipe.get('distill_weight')}"
        + (f", teacher: {finetune['teacher']}" if finetune.get("teacher") else "") + "). "
        "The test split was used for this figure only; intervals are 95 % Wilson intervals."
    ))
    header = ("search (val, %)", "inherited weights (val, %)", "fine-tuned (val, %)", "fine-tuned (test, %)")
    row = (
        _pct(finetune.get("val_accuracy_search")),
        _pct(finetune.get("val_accuracy_inherited")),
        f"{_pct(val.get('accuracy'))} [{_pct(val.get('low'))}, {_pct(val.get('high'))}]",
        f"{_pct(test.get('accuracy'))} [{_pct(test.get('low'))}, {_pct(test.get('high'))}] (n={test.get('n')})",
    )
    blocks.append(Table(header, (row,)))
    check = finetune.get("check", {})
    blocks.append(Para(f"ONNX: {finetune.get('onnx')} (ONNX Runtime check "
                       f"{'passed' if isinstance(check, Mapping) and check.get('passed') else 'FAILED'})."))
    return blocks


def trust_sections(out_dir: Path) -> list[Block]:
    """Both sections for the run directory ``out_dir``."""
    return ranking_section(out_dir, _read(out_dir / _RANKING)) + finetune_section(_read(out_dir / _FINETUNE))
