"""One search session, shared by both engines: the run's search lock, the study, recovery, the summary."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.core.errors import UsageError
from nas.search.locks import LockHeldError, exclusive_lock
from nas.search.records import write_trials_csv
from nas.search.study import count_candidates, make_storage, open_study, records_from_study, recover_interrupted

if TYPE_CHECKING:
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig

__all__ = ["SearchSummary", "finish_search", "search_session", "show_progress", "with_overrides"]


def with_overrides(search: SearchConfig, *, target: int | None, workers: int | None) -> SearchConfig:
    update: dict[str, Any] = {}
    if target is not None:
        update["trials"] = target
    if workers is not None:
        update["workers"] = workers
    return search.model_copy(update=update) if update else search


@dataclass(frozen=True)
class SearchSummary:
    complete: int
    failed: int
    duplicates: int
    seconds: float
    workers: int
    recovered: int


@contextlib.contextmanager
def search_session(run: RunDir, search: SearchConfig) -> Iterator[tuple[optuna.Study, int]]:
    """Hold the run's search lock, open its study and recover interrupted trials; on exit, write trials.csv.

    Yields the study and how many interrupted trials were failed and re-enqueued. Shared by both engines.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                exclusive_lock(run.lock_path("search"), blocking=False, what=f"another search is running on {run.root}")
            )
        except LockHeldError as err:
            raise UsageError(str(err)) from None
        study = open_study(make_storage(run, search), search)
        try:
            yield study, recover_interrupted(study)
        finally:
            write_trials_csv(records_from_study(study), run.trials_csv)


def finish_search(
    run: RunDir, study: optuna.Study, search: SearchConfig, seconds: float, recovered: int, **info: Any
) -> SearchSummary:
    """The summary of a finished search, with its time added to run.json."""
    trials_now = study.get_trials(deepcopy=False)
    summary = SearchSummary(
        complete=sum(t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs for t in trials_now),
        failed=sum(t.state == TrialState.FAIL for t in trials_now),
        duplicates=sum("duplicate_of" in t.user_attrs for t in trials_now),
        seconds=seconds,
        workers=search.workers,
        recovered=recovered,
    )
    previous = run.read_info().get("timings", {}).get("search_s", 0.0)
    run.update_info(
        timings={"search_s": previous + seconds},
        search={"workers": search.workers, "engine": search.engine, "sampler": search.sampler, **info},
    )
    return summary



def show_progress(bar: Any, study: optuna.Study) -> None:
    complete, _ = count_candidates(study)
    best = max(
        (r.accuracy for r in records_from_study(study) if r.status == "COMPLETE" and r.feasible and math.isfinite(r.accuracy)),
        default=math.nan,
    )
    bar.n = min(complete, bar.total)
    bar.set_postfix_str(f"best feasible acc {best:.4f}" if math.isfinite(best) else "no feasible yet")
    bar.refresh()
