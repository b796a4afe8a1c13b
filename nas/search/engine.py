"""Engine `optuna`: N worker processes sharing one Optuna storage, on one machine or many, surviving interruptions.

Every trial is one candidate: the sampler suggests an architecture through the space, the worker evaluates
it (nas.search.candidate), sets every metric as a user attribute and every budget as a constraint
(``trial.set_constraint``: feasible when <= 0), and tells the objective values. The storage is the source
of truth (``optuna.load_study`` and optuna-dashboard read it as is); ``trials.csv`` mirrors it.

Rules, so that nothing computed is lost and nothing is done twice, however many machines share the study:
- the number asked for counts *distinct, finished* candidates (state COMPLETE);
- counting, asking and claiming an architecture happen under the study's ask mutex (in the database for
  PostgreSQL and MySQL: nas.search.mutex), so workers on any machine never overshoot the count and a
  proposal whose architecture is already complete or running is told PRUNED with ``duplicate_of``;
- every worker seeds its sampler from a ticket no other worker got (``take_worker_ticket``);
- a running trial holds a heartbeat (RDB storages); one whose heartbeat stopped is failed and its parameters
  re-enqueued by any live worker, so a dead machine's candidates are retried by the survivors. On the journal
  file (one machine) a dead worker's trial is failed by the parent, which starts a replacement;
- while the candidates still missing are all running elsewhere, a worker waits instead of leaving (one of
  them may fail); a search that ends short of its count says so (the summary's ``short``; exit 1);
- workers die with the ``nas search`` process that started them (nas.search.lifeline).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from nas.search.lifeline import die_with_parent
from nas.search.locks import RWFileLock
from nas.search.recovery import recover_interrupted, retry_stale_trials
from nas.search.screening import LatencyScreen, latency_screen
from nas.search.session import (
    SearchSession,
    SearchSummary,
    finish_search,
    make_mutex,
    search_session,
    show_progress,
    with_overrides,
)
from nas.search.storage import TrialHeartbeat, heartbeat_enabled
from nas.search.study import (
    WAIT,
    ask_candidate,
    count_candidates,
    fail_candidate,
    make_optuna_sampler,
    make_storage,
    open_study,
    take_worker_ticket,
    tell_candidate,
)
from profilers import child_thread_environment, configure_worker_threads, torch_threads

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig
    from nas.search.candidate import Evaluator
    from nas.search.mutex import StudyMutex
    from search_spaces import Architecture

__all__ = ["run_search"]


@dataclass
class _Worker:
    """The loop one worker runs: ask (under the ask mutex), evaluate, tell, until enough are finished."""

    study: optuna.Study
    mutex: StudyMutex
    evaluator: Evaluator
    search: SearchConfig
    target: int
    name: str
    screen: LatencyScreen | None = None

    def step(self) -> bool:
        """One trial. False when the search has what it needs (or has asked too often)."""
        storage = self.study._storage
        with self.mutex.hold():
            retry_stale_trials(self.study)
            asked = ask_candidate(self.study, self.evaluator.supernet.space, self.target, self.name)
        if asked is None:
            return False
        if asked is WAIT:
            if not heartbeat_enabled(storage):
                return False  # one machine: the parent retries what a dead worker of ours left
            time.sleep(min(2.0, self.search.heartbeat_interval))
            return True
        assert isinstance(asked, tuple)
        trial, arch = asked
        if arch is None:
            return True  # a duplicate proposal, told PRUNED
        with TrialHeartbeat(storage, trial._trial_id):
            try:
                self._evaluate(trial, arch)
            except optuna.exceptions.UpdateFinishedTrialError:
                # Another process found our heartbeat late and failed the trial; its retry redoes the candidate.
                print(f"worker {self.name}: trial {trial.number} was failed by another process meanwhile; result dropped")
        return True

    def _evaluate(self, trial: optuna.Trial, arch: Architecture) -> None:
        if self.screen is not None and self.screen.skip(self.study, trial, arch):
            return
        try:
            metrics = self.evaluator.evaluate(arch)
        except Exception as err:  # a candidate that cannot be evaluated fails alone, the search goes on
            fail_candidate(self.study, trial, f"{type(err).__name__}: {err}")
            print(f"worker {self.name}: trial {trial.number} failed:\n{traceback.format_exc()}")
            return
        tell_candidate(self.study, trial, metrics, self.search)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _make_worker(run: RunDir, cfg: RunConfig, search: SearchConfig, target: int, lock: RWFileLock | None) -> _Worker:
    from nas.core.config import make_space
    from nas.search.candidate import Evaluator
    from supernet import load_supernet

    data = cfg.data.load()
    make_space(cfg, data)  # the data must still fit the space the supernet was trained for
    supernet = load_supernet(run.require_supernet()).eval()
    evaluator = Evaluator(supernet, data, cfg.supernet, search, lock=lock)
    study = open_study(make_storage(run, search), search)
    mutex = make_mutex(run, search)
    with mutex.hold():
        ticket = take_worker_ticket(study)
    study.sampler = make_optuna_sampler(search, search.seed + 1000 * ticket)
    screen = latency_screen(run, search, supernet.space, lock)
    return _Worker(study, mutex, evaluator, search, target, _worker_name(), screen)


def _worker_process(root: str, index: int, threads: int, target: int, workers: int, parent: int) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, no inherited torch threads)."""
    from nas.core.run_dir import RunDir

    die_with_parent(parent)
    configure_worker_threads(threads)
    run = RunDir(Path(root))
    cfg = run.load_config()
    search = with_overrides(cfg.search, target=target, workers=workers)
    lock = RWFileLock(run.lock_path("timing")) if search.exclusive_timing else None
    worker = _make_worker(run, cfg, search, target, lock)
    try:
        while worker.step():
            pass
    finally:
        worker.mutex.close()


def run_search(run: RunDir, *, trials: int | None = None, workers: int | None = None, progress: bool = True) -> SearchSummary:
    """Search until ``trials`` distinct candidates are finished (resuming what the run already has).

    Returns the summary; ``summary.short`` is True when the search ended with fewer (the command exits 1).
    """
    from tqdm import tqdm

    cfg = run.load_config()
    search = with_overrides(cfg.search, target=trials, workers=workers)
    run.require_supernet()
    start = time.perf_counter()
    with search_session(run, search) as session:
        study = session.study
        complete, _ = count_candidates(study)
        bar = tqdm(total=search.trials, initial=min(complete, search.trials), desc="search", unit="cand", disable=not progress, dynamic_ncols=True)
        try:
            if complete < search.trials:
                if search.workers == 1:
                    _run_inline(run, cfg, search, study, bar)
                else:
                    _run_processes(run, search, session, bar)
        finally:
            bar.close()
    return finish_search(run, study, search.model_copy(update={"engine": "optuna"}), time.perf_counter() - start, session.recovered)


def _run_inline(run: RunDir, cfg: RunConfig, search: SearchConfig, study: optuna.Study, bar: Any) -> None:
    with torch_threads(search.threads_per_worker()):
        worker = _make_worker(run, cfg, search, search.trials, None)
        try:
            while worker.step():
                show_progress(bar, study)
        finally:
            worker.mutex.close()


def _run_processes(run: RunDir, search: SearchConfig, session: SearchSession, bar: Any) -> None:
    ctx = mp.get_context("spawn")
    threads = search.threads_per_worker()
    study = session.study

    def start(index: int) -> Any:
        proc = ctx.Process(
            target=_worker_process,
            args=(str(run.root), index, threads, search.trials, search.workers, os.getpid()),
            daemon=False,
        )
        with child_thread_environment(threads):  # read by the child when it imports torch, before our code runs
            proc.start()
        return proc

    def recover(proc: Any) -> None:
        with session.mutex.hold():
            recover_interrupted(study, worker=f"{host}:{proc.pid}")

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
                    recover(proc)
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
                recover(proc)
        raise
