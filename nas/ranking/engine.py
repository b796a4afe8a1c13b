"""``nas rank``: standalone trainings as trials of the run's storage, in N worker processes or Ray tasks, resumable.

The trainings run on the run's engine: ``optuna`` (N local worker processes) or ``ray`` (N Ray tasks on a local
cluster, or on an existing one at ``--address``/``search.ray_address``; every node must see the run directory,
as for a Ray search with a journal storage). Each worker loads the data once, then claims a task (architecture, seed), trains the architecture from
scratch with the standalone :class:`~nas.finetune.Recipe` (checkpoint every epoch in ``RUN/ranking/``), scores it
on the validation split and tells the trial. Each worker uses the run's ``supernet.threads`` torch threads
(default 1), at most ``cores // workers``. An
interrupted command (Ctrl-C, kill -9) loses at most the epoch in progress: rerun it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import socket
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.core.config import load_data, make_space
from nas.core.errors import UsageError
from nas.core.sections import default_threads_per_worker
from nas.finetune import Recipe, train_standalone
from nas.ranking.analysis import RANKING_FILE, analyse
from nas.ranking.plan import RankedArch, Task, pick_spread, score_archs
from nas.ranking.trials import (
    claim_task,
    fail_task,
    finished_accuracies,
    open_ranking_study,
    recover_running,
    tell_result,
)
from nas.search.locks import LockHeldError, exclusive_lock
from nas.search.records import run_records
from profilers import child_thread_environment, configure_worker_threads, torch_threads

if TYPE_CHECKING:
    import optuna

    from nas.core.data import DataBundle
    from nas.core.run_dir import RunDir
    from search_spaces import SearchSpace

__all__ = ["rank_run", "train_task"]

_INIT_SEED = 10_007  # initial weights of seed s: torch.manual_seed(_INIT_SEED + s), the same for every architecture


def train_task(run: RunDir, task: Task, data: DataBundle, space: SearchSpace, batch_size: int) -> dict[str, Any]:
    """Train one task's architecture from scratch and score it on the validation split."""
    from search_spaces import Architecture
    from supernet import top1_accuracy

    arch = space.validate(Architecture(space.name, task.arch.arch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_INIT_SEED + task.seed)
        model = space.build(arch)
    recipe = Recipe(epochs=task.epochs, seed=task.seed, batch_size=min(batch_size, len(data.train)))
    checkpoint = run.root / "ranking" / f"{task.key}.pt"
    result = train_standalone(model, data.train, recipe, checkpoint=checkpoint)
    return {
        "accuracy": top1_accuracy(model, data.val),
        "train_accuracy": result.history[-1]["accuracy"],
        "train_seconds": sum(h["seconds"] for h in result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def _worker_loop(run: RunDir, tasks: list[Task], name: str) -> None:
    cfg = run.load_config()
    data = load_data(cfg)
    space = make_space(cfg, data)
    study = open_ranking_study(run, cfg.search)
    while True:
        with exclusive_lock(run.lock_path("ranking-ask")):
            claimed = claim_task(study, tasks, name)
        if claimed is None:
            return
        trial, task = claimed
        try:
            result = train_task(run, task, data, space, cfg.supernet.batch_size)
        except Exception as err:  # one training that fails does not stop the others
            fail_task(study, trial, f"{type(err).__name__}: {err}")
            print(f"worker {name}: training {task.key} failed:\n{traceback.format_exc()}")
            continue
        tell_result(study, trial, result.pop("accuracy"), result)


def _worker_process(root: str, tasks_json: str, threads: int) -> None:
    from nas.core.run_dir import RunDir

    configure_worker_threads(threads)
    tasks = [_task_from_dict(t) for t in json.loads(tasks_json)]
    _worker_loop(RunDir(Path(root)), tasks, f"{socket.gethostname()}:{os.getpid()}")


def _task_from_dict(data: dict[str, Any]) -> Task:
    return Task(RankedArch(**data["arch"]), int(data["seed"]), int(data["epochs"]))


def _run_workers(run: RunDir, tasks: list[Task], workers: int, study: optuna.Study, threads: int | None) -> None:
    """Run the tasks in ``workers`` processes (inline for one) of ``threads`` torch threads each.

    ``threads`` is the run's ``supernet.threads`` (default 1: small convolutions gain nothing from more, and
    oversubscribed cores slow them down many times), capped at ``cores // workers``; None: ``cores // workers``.
    """
    fair = default_threads_per_worker(workers)
    threads = fair if threads is None else min(threads, fair)
    if workers == 1:
        with torch_threads(threads):
            _worker_loop(run, tasks, f"{socket.gethostname()}:{os.getpid()}")
        return
    payload = json.dumps([{"arch": t.arch.to_dict(), "seed": t.seed, "epochs": t.epochs} for t in tasks])
    ctx = mp.get_context("spawn")
    procs = []
    for _ in range(min(workers, len(tasks))):
        proc = ctx.Process(target=_worker_process, args=(str(run.root), payload, threads))
        with child_thread_environment(threads):
            proc.start()
        procs.append(proc)
    host = socket.gethostname()
    try:
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:  # its running training is failed now, and claimed again on the next call
                recover_running(study, worker=f"{host}:{proc.pid}")
    except BaseException:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            with contextlib.suppress(Exception):
                recover_running(study, worker=f"{host}:{proc.pid}")
        raise


def _ray_worker(root: str, tasks_json: str, threads: int) -> str:
    """One Ray task: a worker loop (claims trainings until none is left); returns the worker's name."""
    _worker_process(root, tasks_json, threads)
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_ray_workers(
    run: RunDir, tasks: list[Task], workers: int, study: optuna.Study, threads: int | None, address: str | None
) -> None:
    """Run the tasks in ``workers`` Ray tasks of ``threads`` CPUs each (see the module docstring).

    A Ray task that dies (its node lost, its process killed) leaves its training RUNNING; once every task has
    ended, those are told FAIL, so a rerun trains them again. One ``nas rank`` runs per run (a lock), so every
    RUNNING training of the ranking study is this command's.
    """
    from nas.search.ray.cluster import ray_cluster, ray_dir

    fair = default_threads_per_worker(workers)
    threads = fair if threads is None else min(threads, fair)
    payload = json.dumps([{"arch": t.arch.to_dict(), "seed": t.seed, "epochs": t.epochs} for t in tasks])
    search = run.load_config().search
    with ray_cluster(ray_dir(run, search), address=address, cpus=workers * threads) as cluster:
        import ray

        where = f"the Ray cluster at {address}" if address else f"a local Ray cluster on {cluster.node_ip}"
        print(f"ranking trainings: {min(workers, len(tasks))} Ray task(s) of {threads} CPU(s) on {where}")
        remote = ray.remote(num_cpus=threads, max_retries=0)(_ray_worker)
        refs = [remote.remote(str(run.root.resolve()), payload, threads) for _ in range(min(workers, len(tasks)))]
        failures = []
        try:
            for ref in refs:
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as err:  # the others go on; rerun for what this one left
                    failures.append(str(err).splitlines()[0])
        finally:
            recover_running(study)
        for failure in failures:
            print(f"a Ray task of 'nas rank' failed ({failure}); rerun 'nas rank' to train what it left")


def _trainings(result: dict[str, Any]) -> int:
    return len(result.get("archs", [])) * int(result.get("seeds", 0))


def _write(run: RunDir, result: dict[str, Any], keep_fuller: bool) -> None:
    """Write ranking.json atomically; with ``keep_fuller``, not over a check with more trainings."""
    path = run.root / RANKING_FILE
    if keep_fuller and path.is_file():
        with contextlib.suppress(ValueError, OSError):
            if _trainings(json.loads(path.read_text(encoding="utf-8"))) > _trainings(result):
                return
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(result, indent=2), encoding="utf-8")
    os.replace(partial, path)  # the report never reads half a file


def rank_run(
    run: RunDir,
    *,
    archs: int = 8,
    seeds: int = 2,
    epochs: int = 10,
    workers: int = 1,
    keep_fuller: bool = False,
    engine: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Train ``archs`` of the run's candidates ``seeds`` times each, compare with the supernet, write ranking.json.

    ``keep_fuller`` (the quick check of ``nas run``) leaves a ranking.json with more trainings in place.
    ``engine``: ``optuna`` (local worker processes) or ``ray``; default the run's ``search.engine``.
    ``address``: the Ray cluster to join (default ``search.ray_address``; none: a local cluster).
    """
    from nas.report.selection import competing, select_best
    from supernet import load_supernet

    if seeds < 1 or epochs < 1 or workers < 1:
        raise UsageError(f"--seeds, --epochs and --workers must be at least 1, got {seeds}, {epochs}, {workers}")
    cfg = run.load_config()
    engine = engine or cfg.search.engine
    if engine not in ("optuna", "ray"):
        raise UsageError(f"engine {engine!r} is not one of the allowed engines: 'optuna', 'ray'")
    address = address or cfg.search.ray_address
    if address and engine != "ray":
        raise UsageError("--address is the Ray cluster to join: it goes with engine ray")
    checkpoint = run.require_supernet()
    records = run_records(run)
    pool = competing(records)
    winner = select_best(pool, dict(cfg.report.budgets)) or select_best(pool, {})
    winner_trial = winner.trial if winner is not None else None
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                exclusive_lock(run.lock_path("ranking"), blocking=False, what=f"another 'nas rank' is running on {run.root}")
            )
        except LockHeldError as err:
            raise UsageError(str(err)) from None
        data = load_data(cfg)
        space = make_space(cfg, data)
        with torch_threads(cfg.supernet.threads):
            ranked = score_archs(
                pick_spread(records, archs, winner_trial), load_supernet(checkpoint), space, data, cfg, winner_trial
            )
        tasks = [Task(a, s, epochs) for s in range(seeds) for a in ranked]
        study = open_ranking_study(run, cfg.search)
        recover_running(study)
        if engine == "ray":
            _run_ray_workers(run, tasks, workers, study, cfg.supernet.threads, address)
        else:
            _run_workers(run, tasks, workers, study, cfg.supernet.threads)
        result = analyse(ranked, finished_accuracies(study), seeds, epochs)
    seconds = time.perf_counter() - start
    result.update(workers=workers, engine=engine, seconds=seconds, data=cfg.data.dataset, space=cfg.space.name,
                  recipe=Recipe(epochs=epochs).dump())
    _write(run, result, keep_fuller)
    previous = run.read_info().get("timings", {}).get("rank_s", 0.0)
    run.update_info(timings={"rank_s": previous + seconds})
    return result
