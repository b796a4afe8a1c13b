"""From the supernet's scores and the standalone accuracies to the figures and the verdict of ``ranking.json``.

Only architectures whose every seed has finished take part. The standalone accuracy of an architecture is the
mean over its seeds; tau and rho compare it with the supernet's accuracy after BN recalibration (what the search
used) and, for the DetNAS ablation, with the inherited statistics. Top-k overlap uses ``k = max(1, K // 3)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.ranking.plan import task_key
from nas.ranking.stats import correlate, seed_ceiling, top_k_overlap, verdict

if TYPE_CHECKING:
    from nas.ranking.plan import RankedArch

__all__ = ["RANKING_FILE", "analyse"]

RANKING_FILE = "ranking.json"  # in the run directory; nas.report reads it


def analyse(archs: list[RankedArch], accuracies: dict[str, float], seeds: int, epochs: int) -> dict[str, Any]:
    """The ranking check's figures as a JSON-ready mapping (see the module docstring)."""
    rows = []
    for a in archs:
        found = [accuracies.get(task_key(a.arch_id, s, epochs)) for s in range(seeds)]
        if all(v is not None for v in found):
            values = [float(v) for v in found if v is not None]
            rows.append({**a.to_dict(), "standalone": values, "standalone_mean": float(np.mean(values))})
    out: dict[str, Any] = {
        "archs": rows,
        "planned_archs": len(archs),
        "seeds": seeds,
        "epochs": epochs,
        "complete": len(rows) == len(archs),
    }
    if len(rows) < 2:
        out.update(verdict="unknown", reason=f"only {len(rows)} architecture(s) finished: nothing to correlate yet.")
        return out
    supernet = [r["supernet_accuracy"] for r in rows]
    inherited = [r["inherited_accuracy"] for r in rows]
    standalone = [r["standalone_mean"] for r in rows]
    with_bn = correlate(supernet, standalone)
    without_bn = correlate(inherited, standalone, seed=10)
    ceiling = seed_ceiling(np.array([r["standalone"] for r in rows]), seed=20)
    k = max(1, len(rows) // 3)
    order = np.argsort(-np.asarray(standalone), kind="stable")
    winner_rank = next((int(np.where(order == i)[0][0]) + 1 for i, r in enumerate(rows) if r["winner"]), None)
    label, reason = verdict(with_bn["kendall_tau"], ceiling)
    if max(standalone) == min(standalone):
        label, reason = "unknown", (
            f"standalone training does not separate these architectures at all (all {100 * standalone[0]:.1f} %): "
            "train longer (--epochs) or use a harder task, then rank again."
        )
    out.update(
        kendall_tau=with_bn["kendall_tau"].to_dict(),
        spearman_rho=with_bn["spearman_rho"].to_dict(),
        kendall_tau_inherited=without_bn["kendall_tau"].to_dict(),
        spearman_rho_inherited=without_bn["spearman_rho"].to_dict(),
        seed_ceiling=ceiling.to_dict() if ceiling is not None else None,
        top_k=k,
        top_k_overlap=top_k_overlap(supernet, standalone, k),
        winner_standalone_rank=winner_rank,
        standalone_spread=float(max(standalone) - min(standalone)),
        verdict=label,
        reason=reason,
    )
    return _finite(out)


def _finite(value: Any) -> Any:
    """NaN becomes None, so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
