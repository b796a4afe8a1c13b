"""Latency screening of proposals, shared by both engines: skip what the latency table says is clearly too slow.

With a ``latency_ms`` budget and ``search.latency_table`` on, the space's per-block latency table
(``nas.search.latency_table``, ``<run>/latency_table.json``, built once per device setting) predicts each
proposal's latency; one predicted over ``budget * (1 + search.latency_table_margin)`` is told PRUNED with a
``skipped`` attribute, unevaluated and not counted as a candidate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from nas.core.budgets import resolve_budgets

if TYPE_CHECKING:
    import optuna

    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig
    from nas.search.locks import RWFileLock
    from search_spaces import Architecture, SearchSpace

__all__ = ["LatencyScreen", "latency_screen"]


@dataclass
class LatencyScreen:
    """Predicts a proposal's latency from the table and skips it when it is clearly over the budget."""

    table: Any  # nas.search.latency_table.SpaceLatencyTable
    space: SearchSpace
    budget_ms: float
    margin: float
    lock: RWFileLock | None = None  # the run's timing lock: predicting may time a missing block

    def skip(self, study: optuna.Study, trial: optuna.Trial, arch: Architecture) -> bool:
        """True (and the trial told PRUNED with ``skipped``) when ``arch`` is predicted over the budget."""
        from nas.search.latency_table import predict_latency

        with self.lock.exclusive() if self.lock else contextlib.nullcontext():
            predicted = predict_latency(self.table, self.space, arch)
        trial.set_user_attr("predicted_latency_ms", predicted)
        if predicted <= self.budget_ms * (1 + self.margin):
            return False
        trial.set_user_attr("skipped", f"predicted latency {predicted:.4g} ms > budget {self.budget_ms:g} ms + margin")
        study.tell(trial, state=TrialState.PRUNED)
        return True


def latency_screen(
    run: RunDir, search: SearchConfig, space: SearchSpace, lock: RWFileLock | None = None
) -> LatencyScreen | None:
    """The run's screen (its table loaded, or measured and saved on first use), or None when not configured."""
    if not search.latency_table or "latency_ms" not in search.budgets:
        return None
    from nas.search.latency_table import load_or_build

    with lock.exclusive() if lock else contextlib.nullcontext():
        table = load_or_build(
            run.root,
            space,
            device=search.device,
            threads=search.latency_threads,
            batch_size=search.latency_batch_size,
            backend=search.latency_backend,
        )
    # A search budget is absolute (relative budgets are the report's); it may carry a confidence.
    budget = float(resolve_budgets({"latency_ms": search.budgets["latency_ms"]})["latency_ms"])
    return LatencyScreen(table, space, budget, search.latency_table_margin, lock)
