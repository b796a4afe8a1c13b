"""One search session, shared by both engines: the run's search lock, the study, recovery, the summary.

A session refuses a storage other than the one the run's candidates are in (``search.storage`` changed after
a search: the old candidates would be silently left behind), repairs a journal whose last record a crash cut
off, and recovers what interrupted searches left running: on the journal file (one machine, the search lock
held) every running trial; on an RDB only trials whose heartbeat stopped (another machine may be running).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.core.errors import UsageError
from nas.search.locks import LockHeldError, exclusive_lock
from nas.search.mutex import StudyMutex
from nas.search.records import write_trials_csv
from nas.search.recovery import recover_interrupted, retry_stale_trials
from nas.search.storage import repair_journal, storage_label
from nas.search.study import STUDY_NAME, count_candidates, make_storage, open_study, records_from_study

if TYPE_CHECKING:
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig

__all__ = [
    "SearchSession",
    "SearchSummary",
    "finish_search",
    "make_mutex",
    "search_session",
    "show_progress",
    "with_overrides",
]


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
    target: int = 0  # distinct finished candidates asked for

    @property
    def short(self) -> bool:
        """True when the search ended with fewer finished candidates than asked for."""
        return self.complete < self.target


@dataclass(frozen=True)
class SearchSession:
    """An open search: the study, its ask mutex, and how many interrupted trials were failed and re-enqueued."""

    study: optuna.Study
    mutex: StudyMutex
    recovered: int


def make_mutex(run: RunDir, search: SearchConfig) -> StudyMutex:
    """The ask mutex of the run's study (see nas.search.mutex): in the database, or a lock file next to the storage."""
    local = run.lock_path("ask")
    if search.storage is not None and search.storage.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(search.storage).database
        if database and database != ":memory:":
            local = Path(database).with_name(Path(database).name + ".ask.lock")  # shared by every run using the file
    return StudyMutex(search.storage, STUDY_NAME, local)


def _check_storage(run: RunDir, search: SearchConfig) -> None:
    label = storage_label(search)
    used = run.read_info().get("search", {}).get("storage")
    if used is not None and used != label:
        raise UsageError(
            f"this run's candidates are in {used}, but search.storage now says {label}; set search.storage back "
            "to go on with them, or search into a new run directory"
        )
    run.update_info(search={"storage": label})


@contextlib.contextmanager
def search_session(run: RunDir, search: SearchConfig) -> Iterator[SearchSession]:
    """Hold the run's search lock, open its study and recover interrupted trials; on exit, write trials.csv.

    Shared by both engines.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                exclusive_lock(run.lock_path("search"), blocking=False, what=f"another search is running on {run.root}")
            )
        except LockHeldError as err:
            raise UsageError(str(err)) from None
        _check_storage(run, search)
        if search.storage is None:
            backup = repair_journal(run.journal)
            if backup is not None:
                print(f"{run.journal}: its last record was cut off by a crash and is removed; the file as it was: {backup}")
        study = open_study(make_storage(run, search), search)
        mutex = make_mutex(run, search)
        stack.callback(mutex.close)
        with mutex.hold():
            recovered = recover_interrupted(study) if search.storage is None else retry_stale_trials(study)
        try:
            yield SearchSession(study, mutex, recovered)
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
        target=search.trials,
    )
    previous = run.read_info().get("timings", {}).get("search_s", 0.0)
    run.update_info(
        timings={"search_s": previous + seconds},
        search={
            "workers": search.workers,
            "engine": search.engine,
            "sampler": search.sampler,
            "storage": storage_label(search),
            **info,
        },
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
