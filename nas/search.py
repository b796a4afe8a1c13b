"""Engine `optuna`: N worker processes sharing one Optuna storage, surviving interruptions.

Every trial is one candidate: the sampler suggests an architecture through the space, the worker evaluates
it (nas.evaluate), sets every metric as a user attribute and every budget as a constraint
(``trial.set_constraint``: feasible when <= 0), and tells the objective values. The storage is the source
of truth (``optuna.load_study`` and optuna-dashboard read it as is); ``trials.csv`` mirrors it.

Rules, so that nothing computed is lost and nothing is done twice:
- the number asked for counts *distinct, finished* candidates (state COMPLETE);
- a proposal whose architecture is already complete or running is told PRUNED with ``duplicate_of`` and
  another is asked; counting and asking happen under the run's ask lock, so N workers never overshoot;
- a trial left RUNNING by a dead worker (or a killed run) is marked FAIL and its parameters re-enqueued,
  so the same architecture is retried first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import multiprocessing as mp
import os
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.errors import UsageError
from nas.locks import LockHeldError, RWFileLock, exclusive_lock
from nas.records import CandidateRecord, write_trials_csv

if TYPE_CHECKING:
    from nas.config import RunConfig
    from nas.evaluate import Evaluator
    from nas.run_dir import RunDir
    from nas.search_config import SearchConfig
    from search_spaces import Architecture, SearchSpace

__all__ = [
    "METRIC_ATTRS",
    "STUDY_NAME",
    "SearchSummary",
    "ask_candidate",
    "constraint_values",
    "count_candidates",
    "fail_candidate",
    "finish_search",
    "make_sampler",
    "make_storage",
    "open_study",
    "records_from_study",
    "recover_interrupted",
    "run_search",
    "search_session",
    "show_progress",
    "tell_candidate",
    "with_overrides",
]

STUDY_NAME = "search"
_RECORD_ATTRS = ("arch_id", "arch", "worker", "started_at", "finished_at", "duration_s", "feasible", "violations", "error")
METRIC_ATTRS = (
    "accuracy", "params", "mult_adds", "elementwise_ops", "memory_access_bytes", "latency_ms",
    "latency_p10_ms", "latency_p90_ms", "latency_backend", "latency_spread", "energy_mj", "energy_source",
)  # fmt: skip


def make_storage(run: RunDir, search: SearchConfig) -> optuna.storages.BaseStorage:
    """The run's Optuna storage: a journal file in the run directory unless an RDB URL is configured."""
    if search.storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        run.root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(run.journal)))
    try:
        return optuna.storages.RDBStorage(search.storage)
    except Exception as err:  # sqlalchemy raises many types for a bad URL or an unreachable server
        raise UsageError(f"search.storage {search.storage!r} cannot be opened: {err}") from None


def make_sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=search.population_size, seed=seed)
    if search.sampler == "tpe":
        # constant_liar keeps parallel workers from proposing the same point while one is being evaluated.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, search.trials // 4)), constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(storage: optuna.storages.BaseStorage, search: SearchConfig, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    directions = [optuna.study.StudyDirection.MAXIMIZE] + [optuna.study.StudyDirection.MINIMIZE] * (
        len(search.objectives) - 1
    )
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, directions=directions, sampler=sampler, load_if_exists=True
    )
    stored = study.user_attrs.get("objectives")
    if stored is None:
        study.set_user_attr("objectives", list(search.objectives))
        study.set_user_attr("budgets", dict(search.budgets))
    elif list(stored) != list(search.objectives):
        raise UsageError(
            f"this run's study optimises {stored}, the config now says {list(search.objectives)}; "
            "use a new run directory to change objectives"
        )
    return study


def constraint_values(metrics: dict[str, Any], budgets: dict[str, float]) -> dict[str, float]:
    """Per budget: measured value minus the bound (feasible when <= 0). An unmeasured value is infeasible."""
    out = {}
    for metric, bound in budgets.items():
        value = float(metrics.get(metric, math.nan))
        out[metric] = value - bound if math.isfinite(value) else 1e30  # finite: every storage can hold it
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def records_from_study(study: optuna.Study) -> list[CandidateRecord]:
    """One record per evaluated candidate (duplicate proposals and skipped ones are not candidates)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        if "arch_id" not in attrs or "arch" not in attrs or "duplicate_of" in attrs or "skipped" in attrs:
            continue  # not a candidate, or one whose start another process is writing right now
        data = {k: attrs[k] for k in (*_RECORD_ATTRS, *METRIC_ATTRS) if k in attrs}
        records.append(CandidateRecord.from_dict({**data, "trial": t.number, "status": t.state.name}))
    return records


def count_candidates(study: optuna.Study) -> tuple[int, int]:
    complete = running = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if "duplicate_of" in t.user_attrs:
            continue
        if t.state == TrialState.COMPLETE:
            complete += 1
        else:
            running += 1
    return complete, running


def recover_interrupted(study: optuna.Study, worker: str | None = None) -> int:
    """Mark RUNNING trials (of ``worker``, or all) FAIL and re-enqueue their parameters. Returns how many."""
    storage = study._storage
    count = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker is not None and t.user_attrs.get("worker") != worker:
            continue
        storage.set_trial_user_attr(t._trial_id, "error", "worker died or run was interrupted; retried")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params and "arch_id" in t.user_attrs:  # asked but never suggested: nothing to retry
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        count += 1
    return count


@dataclass
class _Worker:
    """The loop one worker runs: ask (under the ask lock), evaluate, tell, until enough are finished."""

    run: RunDir
    study: optuna.Study
    evaluator: Evaluator
    search: SearchConfig
    target: int
    name: str
    table: Any = None  # a latency table when the search has a latency budget (nas.latency_table)

    def _predicted_over_budget(self, trial: optuna.Trial, arch: Architecture) -> bool:
        """Skip a candidate the latency table says cannot meet the latency budget (told PRUNED, not counted)."""
        from nas.latency_table import predict_latency

        if self.table is None:
            return False
        budget = self.search.budgets["latency_ms"]
        lock = self.evaluator.lock
        with lock.exclusive() if lock else contextlib.nullcontext():
            predicted = predict_latency(self.table, self.evaluator.supernet.space, arch)
        trial.set_user_attr("predicted_latency_ms", predicted)
        if predicted <= budget * (1 + self.search.latency_table_margin):
            return False
        trial.set_user_attr("skipped", f"predicted latency {predicted:.4g} ms > budget {budget:g} ms + margin")
        self.study.tell(trial, state=TrialState.PRUNED)
        return True

    def step(self) -> bool:
        """One trial. False when the search has what it needs (or has asked too often)."""
        with exclusive_lock(self.run.lock_path("ask")):
            asked = ask_candidate(self.study, self.evaluator.supernet.space, self.target, self.name)
        if asked is None:
            return False
        trial, arch = asked
        if arch is None:
            return True  # a duplicate proposal, told PRUNED
        if self._predicted_over_budget(trial, arch):
            return True
        try:
            metrics = self.evaluator.evaluate(arch)
        except Exception as err:  # a candidate that cannot be evaluated fails alone, the search goes on
            fail_candidate(self.study, trial, f"{type(err).__name__}: {err}")
            print(f"worker {self.name}: trial {trial.number} failed:\n{traceback.format_exc()}")
            return True
        tell_candidate(self.study, trial, metrics, self.search)
        return True


def ask_candidate(
    study: optuna.Study, space: SearchSpace, target: int, worker: str
) -> tuple[optuna.Trial, Architecture | None] | None:
    """Ask the next candidate, or None when ``target`` distinct candidates are complete or running.

    A proposal whose architecture is already complete or running is told PRUNED with ``duplicate_of`` and
    returned with ``None`` for the architecture. Call it under a lock shared by everything asking the study.
    """
    complete, running = count_candidates(study)
    if complete + running >= target:
        return None
    if len(study.get_trials(deepcopy=False)) >= target * 20 + 100:
        print(f"worker {worker}: stopping after {target * 20 + 100} proposals: they were duplicates or predicted over the latency budget")
        return None
    trial = study.ask()
    arch = space.suggest(trial)
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if (
            other.number != trial.number
            and other.user_attrs.get("arch_id") == arch.arch_id
            and "duplicate_of" not in other.user_attrs
        ):
            trial.set_user_attr("duplicate_of", other.number)
            study.tell(trial, state=TrialState.PRUNED)
            return trial, None
    # "arch_id" last: readers (the progress bar, other processes) take it as the mark of a complete record start.
    trial.set_user_attr("arch", dict(arch.values))
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("started_at", _now())
    trial.set_user_attr("arch_id", arch.arch_id)
    return trial, arch


def fail_candidate(study: optuna.Study, trial: optuna.Trial, error: str) -> None:
    """Tell a candidate that could not be evaluated FAIL, with the reason."""
    trial.set_user_attr("error", error[:2000])
    trial.set_user_attr("finished_at", _now())
    study.tell(trial, state=TrialState.FAIL)


def tell_candidate(study: optuna.Study, trial: optuna.Trial, metrics: dict[str, Any], search: SearchConfig) -> None:
    """Record every metric as a user attribute, every budget as a constraint, and tell the objective values."""
    violations = constraint_values(metrics, search.budgets)
    for key in METRIC_ATTRS:
        trial.set_user_attr(key, metrics[key])
    for metric, value in violations.items():
        trial.set_constraint(metric, value)
    trial.set_user_attr("violations", {k: v for k, v in violations.items() if v > 0})
    trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
    trial.set_user_attr("finished_at", _now())
    if trial.datetime_start is not None:
        trial.set_user_attr("duration_s", (dt.datetime.now() - trial.datetime_start).total_seconds())
    values = [float(metrics[m]) for m in search.objectives]
    if not all(math.isfinite(v) for v in values):
        fail_candidate(study, trial, f"non-finite objective values {values}")
        return
    study.tell(trial, values)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _make_worker(run: RunDir, cfg: RunConfig, search: SearchConfig, target: int, seed: int, lock: RWFileLock | None) -> _Worker:
    from nas.config import make_space
    from nas.evaluate import Evaluator
    from supernet import load_supernet

    data = cfg.data.load()
    make_space(cfg, data)  # the data must still fit the space the supernet was trained for
    supernet = load_supernet(run.require_supernet()).eval()
    evaluator = Evaluator(supernet, data, cfg.supernet, search, lock=lock)
    storage = make_storage(run, search)
    study = open_study(storage, search, make_sampler(search, seed))
    table = None
    if search.latency_table and "latency_ms" in search.budgets:
        from nas.latency_table import load_or_build

        with lock.exclusive() if lock else contextlib.nullcontext():
            table = load_or_build(
                run.root,
                supernet.space,
                device=search.device,
                threads=search.latency_threads,
                batch_size=search.latency_batch_size,
                backend=search.latency_backend,
            )
    return _Worker(run, study, evaluator, search, target, _worker_name(), table)


def _worker_process(root: str, index: int, threads: int, target: int, workers: int) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, no inherited torch threads)."""
    import torch

    from nas.run_dir import RunDir

    torch.set_num_threads(threads)
    run = RunDir(Path(root))
    cfg = run.load_config()
    search = with_overrides(cfg.search, target=target, workers=workers)
    lock = RWFileLock(run.lock_path("timing")) if search.exclusive_timing else None
    worker = _make_worker(run, cfg, search, target, search.seed + 1000 * (index + 1), lock)
    while worker.step():
        pass


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


def run_search(run: RunDir, *, trials: int | None = None, workers: int | None = None, progress: bool = True) -> SearchSummary:
    """Search until ``trials`` distinct candidates are finished (resuming what the run already has)."""
    from tqdm import tqdm

    cfg = run.load_config()
    search = with_overrides(cfg.search, target=trials, workers=workers)
    run.require_supernet()
    start = time.perf_counter()
    with search_session(run, search) as (study, recovered):
        complete, _ = count_candidates(study)
        bar = tqdm(total=search.trials, initial=min(complete, search.trials), desc="search", unit="cand", disable=not progress, dynamic_ncols=True)
        try:
            if complete < search.trials:
                if search.workers == 1:
                    _run_inline(run, cfg, search, study, bar)
                else:
                    _run_processes(run, search, study, bar)
        finally:
            bar.close()
    return finish_search(run, study, search.model_copy(update={"engine": "optuna"}), time.perf_counter() - start, recovered)


def show_progress(bar: Any, study: optuna.Study) -> None:
    complete, _ = count_candidates(study)
    best = max(
        (r.accuracy for r in records_from_study(study) if r.status == "COMPLETE" and r.feasible and math.isfinite(r.accuracy)),
        default=math.nan,
    )
    bar.n = min(complete, bar.total)
    bar.set_postfix_str(f"best feasible acc {best:.4f}" if math.isfinite(best) else "no feasible yet")
    bar.refresh()


def _run_inline(run: RunDir, cfg: RunConfig, search: SearchConfig, study: optuna.Study, bar: Any) -> None:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(search.threads_per_worker())
    try:
        worker = _make_worker(run, cfg, search, search.trials, search.seed, None)
        while worker.step():
            show_progress(bar, study)
    finally:
        torch.set_num_threads(previous)


def _run_processes(run: RunDir, search: SearchConfig, study: optuna.Study, bar: Any) -> None:
    ctx = mp.get_context("spawn")
    threads = search.threads_per_worker()

    def start(index: int) -> Any:
        proc = ctx.Process(
            target=_worker_process, args=(str(run.root), index, threads, search.trials, search.workers), daemon=False
        )
        proc.start()
        return proc

    procs = {i: start(i) for i in range(search.workers)}
    restarts = 0
    host = socket.gethostname()
    try:
        while procs:
            time.sleep(0.5)
            show_progress(bar, study)
            for index, proc in list(procs.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del procs[index]
                if proc.exitcode != 0:
                    # A dead worker: its running trial fails and is retried; a replacement takes its place.
                    recover_interrupted(study, worker=f"{host}:{proc.pid}")
                    restarts += 1
                    if restarts > 3 * search.workers:
                        raise RuntimeError(f"workers died {restarts} times (last exit code {proc.exitcode}); see the messages above")
                    complete, _ = count_candidates(study)
                    if complete < search.trials:
                        procs[index] = start(index)
        show_progress(bar, study)
    except BaseException:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.join(timeout=10)
            with contextlib.suppress(Exception):
                recover_interrupted(study, worker=f"{host}:{proc.pid}")
        raise
