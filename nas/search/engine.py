"""Engine `optuna`: N worker processes sharing one Optuna storage, surviving interruptions.

Every trial is one candidate: the sampler suggests an architecture through the space, the worker evaluates
it (nas.search.candidate), sets every metric as a user attribute and every budget as a constraint
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
import multiprocessing as mp
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from nas.core.budgets import resolve_budgets
from nas.search.locks import RWFileLock, exclusive_lock
from nas.search.session import SearchSummary, finish_search, search_session, show_progress, with_overrides
from nas.search.study import (
    ask_candidate,
    count_candidates,
    fail_candidate,
    make_optuna_sampler,
    make_storage,
    open_study,
    recover_interrupted,
    tell_candidate,
)
from profilers import child_thread_environment, configure_worker_threads, torch_threads

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig
    from nas.search.candidate import Evaluator
    from search_spaces import Architecture

__all__ = ["run_search"]


@dataclass
class _Worker:
    """The loop one worker runs: ask (under the ask lock), evaluate, tell, until enough are finished."""

    run: RunDir
    study: optuna.Study
    evaluator: Evaluator
    search: SearchConfig
    target: int
    name: str
    table: Any = None  # a latency table when the search has a latency budget (nas.search.latency_table)

    def _predicted_over_budget(self, trial: optuna.Trial, arch: Architecture) -> bool:
        """Skip a candidate the latency table says cannot meet the latency budget (told PRUNED, not counted)."""
        from nas.search.latency_table import predict_latency

        if self.table is None:
            return False
        budget = float(resolve_budgets({"latency_ms": self.search.budgets["latency_ms"]})["latency_ms"])
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



def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _make_worker(run: RunDir, cfg: RunConfig, search: SearchConfig, target: int, seed: int, lock: RWFileLock | None) -> _Worker:
    from nas.core.config import make_space
    from nas.search.candidate import Evaluator
    from supernet import load_supernet

    data = cfg.data.load()
    make_space(cfg, data)  # the data must still fit the space the supernet was trained for
    supernet = load_supernet(run.require_supernet()).eval()
    evaluator = Evaluator(supernet, data, cfg.supernet, search, lock=lock)
    storage = make_storage(run, search)
    study = open_study(storage, search, make_optuna_sampler(search, seed))
    table = None
    if search.latency_table and "latency_ms" in search.budgets:
        from nas.search.latency_table import load_or_build

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
    from nas.core.run_dir import RunDir

    configure_worker_threads(threads)
    run = RunDir(Path(root))
    cfg = run.load_config()
    search = with_overrides(cfg.search, target=target, workers=workers)
    lock = RWFileLock(run.lock_path("timing")) if search.exclusive_timing else None
    worker = _make_worker(run, cfg, search, target, search.seed + 1000 * (index + 1), lock)
    while worker.step():
        pass



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



def _run_inline(run: RunDir, cfg: RunConfig, search: SearchConfig, study: optuna.Study, bar: Any) -> None:
    with torch_threads(search.threads_per_worker()):
        worker = _make_worker(run, cfg, search, search.trials, search.seed, None)
        while worker.step():
            show_progress(bar, study)


def _run_processes(run: RunDir, search: SearchConfig, study: optuna.Study, bar: Any) -> None:
    ctx = mp.get_context("spawn")
    threads = search.threads_per_worker()

    def start(index: int) -> Any:
        proc = ctx.Process(
            target=_worker_process, args=(str(run.root), index, threads, search.trials, search.workers), daemon=False
        )
        with child_thread_environment(threads):  # read by the child when it imports torch, before our code runs
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
