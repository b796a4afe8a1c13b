"""What a ranking check trains: K of the run's candidates spread over the supernet's accuracy range, S seeds each.

Choice of candidates: the complete candidates with a finite accuracy are ordered by the supernet's accuracy and
``K`` are taken at evenly spaced ranks (the best and the worst included), so the check sees the whole range the
search produced rather than a cluster of near-ties; the run's winner (the best under the report budgets) replaces
the nearest pick if it is not among them. Every chosen architecture is scored again through the supernet twice:
with BN recalibration (as the search scored it) and with the statistics inherited from the supernet (the DetNAS
ablation), both on the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.core.errors import UsageError

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.data import DataBundle
    from nas.search.records import CandidateRecord
    from search_spaces import SearchSpace
    from supernet import Supernet

__all__ = ["RankedArch", "Task", "pick_spread", "score_archs", "task_key"]


@dataclass(frozen=True)
class RankedArch:
    """One architecture of the check and the supernet's two scores of it (validation accuracy, 0..1)."""

    trial: int  # the search trial it comes from
    arch_id: str
    arch: dict[str, Any]
    supernet_accuracy: float  # BN recalibrated on training data, as the search scores
    inherited_accuracy: float  # BN statistics inherited from the supernet
    winner: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Task:
    """One standalone training: an architecture, a seed and a number of epochs (one trial of the study)."""

    arch: RankedArch
    seed: int
    epochs: int

    @property
    def key(self) -> str:
        return task_key(self.arch.arch_id, self.seed, self.epochs)


def task_key(arch_id: str, seed: int, epochs: int) -> str:
    return f"{arch_id}-s{seed}-e{epochs}"


def pick_spread(records: list[CandidateRecord], k: int, winner_trial: int | None) -> list[CandidateRecord]:
    """``k`` distinct architectures at evenly spaced ranks of supernet accuracy, the winner among them."""
    if k < 2:
        raise UsageError(f"--archs must be at least 2 (a rank correlation needs two points), got {k}")
    pool: dict[str, CandidateRecord] = {}
    for r in sorted(records, key=lambda r: (-r.accuracy, r.trial)):
        if r.status == "COMPLETE" and np.isfinite(r.accuracy) and r.arch_id not in pool:
            pool[r.arch_id] = r
    ordered = list(pool.values())
    if len(ordered) < 2:
        raise UsageError(f"the run has {len(ordered)} complete candidate(s); a ranking check needs at least 2")
    if len(ordered) <= k:
        return ordered
    ranks = sorted({round(float(x)) for x in np.linspace(0, len(ordered) - 1, k)})
    picked = [ordered[i] for i in ranks]
    winner = next((r for r in ordered if r.trial == winner_trial), None)
    if winner is not None and winner not in picked:
        position = ordered.index(winner)
        nearest = min(range(len(ranks)), key=lambda j: (abs(ranks[j] - position), ranks[j]))
        picked[nearest] = winner
    return sorted(picked, key=lambda r: (-r.accuracy, r.trial))


def score_archs(
    picked: list[CandidateRecord],
    supernet: Supernet,
    space: SearchSpace,
    data: DataBundle,
    cfg: RunConfig,
    winner_trial: int | None,
) -> list[RankedArch]:
    """The supernet's accuracy of each picked architecture with and without BN recalibration."""
    from search_spaces import Architecture
    from supernet import score_subnet

    out = []
    for record in picked:
        arch = space.validate(Architecture(space.name, record.arch))
        scores = [
            score_subnet(
                supernet, arch, data.train, data.val, bn_batches=batches, batch_size=cfg.supernet.batch_size,
                seed=cfg.search.seed, eval_batch_size=cfg.search.eval_batch_size,
            ).accuracy
            for batches in (cfg.supernet.bn_batches, None)
        ]
        out.append(RankedArch(record.trial, arch.arch_id, dict(arch.values), scores[0], scores[1], record.trial == winner_trial))
    return out
