"""Engine `ray`: the search's candidates are evaluated by Ray Tune trials, on a local or an existing cluster.

The Optuna study stays in the driver (this process): a Tune searcher (``nas.search.ray.searcher``) asks it for
candidates and tells it the measured metrics, budgets as constraints, exactly as engine optuna does, so
``nas report`` and ``nas export`` read a Ray run unchanged and only the driver needs the run's storage.
Trials (``nas.search.ray.trainable``) score one candidate each, on actors that Tune reuses from trial to trial;
the supernet's weights and the data go to the object store once.

Faults: a trial whose worker process (or node) dies is retried by Tune (``search.max_failures`` times),
its Optuna trial staying RUNNING meanwhile. A driver that dies leaves RUNNING trials in the study; the
next search of the run marks them FAIL and re-enqueues their architectures (``recover_interrupted``),
then starts a fresh Tune experiment that asks for what is missing. Finished candidates are never redone.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from nas.core.errors import UsageError
from nas.search.recovery import recover_interrupted
from nas.search.session import (
    SearchSession,
    SearchSummary,
    finish_search,
    search_session,
    show_progress,
    with_overrides,
)
from nas.search.study import count_candidates, make_optuna_sampler, take_worker_ticket

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig

__all__ = ["run_ray_search"]


def run_ray_search(
    run: RunDir,
    *,
    trials: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> SearchSummary:
    """Search with Ray Tune until ``trials`` distinct candidates are finished (resuming what the run has).

    ``address``: an existing Ray cluster to join (default ``search.ray_address``); without one, a local
    cluster of ``workers`` CPUs is started and stopped. ``workers``: trials running at once.
    """
    from tqdm import tqdm

    cfg = run.load_config()
    search = with_overrides(cfg.search, target=trials, workers=workers)
    address = address or search.ray_address
    run.require_supernet()
    start = time.perf_counter()
    with search_session(run, search) as session:
        study = session.study
        complete, _ = count_candidates(study)
        bar = tqdm(
            total=search.trials,
            initial=min(complete, search.trials),
            desc="search (ray)",
            unit="cand",
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            if complete < search.trials:
                # A sampler seeded by a ticket no other worker got: a resumed search, or another machine on the same
                # study, does not replay the proposals of the first.
                with session.mutex.hold():
                    ticket = take_worker_ticket(study)
                study.sampler = make_optuna_sampler(search, search.seed + 1000 * ticket)
                _run_tune(run, cfg, search, session, address, bar)
        finally:
            bar.close()
            with session.mutex.hold():
                # Candidates of an interrupted search: FAIL and re-enqueued, as a rerun would. Only this driver's:
                # other machines may share an RDB study.
                recover_interrupted(study, worker_prefix=None if search.storage is None else _driver_name())
    ray_search = search.model_copy(update={"engine": "ray"})
    return finish_search(run, study, ray_search, time.perf_counter() - start, session.recovered, ray_address=address)


def _driver_name() -> str:
    """The prefix of the ``worker`` attribute of this driver's running trials (``ray:HOST:PID``)."""
    return f"ray:{socket.gethostname()}:{os.getpid()}"


def _trial_dirname(trial: Any) -> str:
    from nas.search.ray.trainable import TRIAL_KEY

    return f"candidate-{trial.config.get(TRIAL_KEY, 'x')}-{trial.trial_id}"


def _run_tune(
    run: RunDir, cfg: RunConfig, search: SearchConfig, session: SearchSession, address: str | None, bar: Any
) -> None:
    from nas.core.config import make_space
    from nas.search.ray.cluster import ray_cluster, ray_dir

    data = cfg.data.load()
    space = make_space(cfg, data)  # the data must still fit the space the supernet was trained for
    root = ray_dir(run, search)
    with ray_cluster(
        root, address=address, cpus=search.workers, dashboard=search.ray_dashboard, say=bar.write
    ) as cluster:
        from ray import tune

        from nas.search.locks import RWFileLock
        from nas.search.ray.searcher import RetryReporter, StudySearcher
        from nas.search.ray.trainable import CandidateTrainable, make_payload
        from nas.search.screening import latency_screen

        if cluster.cpus < 1:
            raise UsageError(f"the Ray cluster at {address} has no CPU to run a trial on")
        if search.device == "cuda" and cluster.gpus < 1:
            raise UsageError(
                "search.device is cuda but the Ray cluster has no GPU; allowed: device cpu, or a cluster with GPUs"
            )
        where = f"the Ray cluster at {address}" if address else f"a local Ray cluster on {cluster.node_ip}"
        bar.write(
            f"search: {where}, {cluster.nodes} node(s), {cluster.cpus:g} CPUs, {search.workers} trial(s) at once; "
            f"Tune's results in {root / 'tune'}"
        )
        # A trial holds one Ray CPU. On a local cluster of `workers` CPUs each trial process gets
        # cores // workers torch threads; on an existing cluster one thread per CPU it holds.
        threads = search.threads_per_worker() if address is None else 1
        payload = make_payload(run, data, cfg.supernet, search, threads)
        # Ray hides GPUs from an actor that did not ask for one: a CUDA search asks for one GPU per trial.
        resources: dict[str, float] = {"cpu": 1.0, "gpu": 1.0} if search.device == "cuda" else {"cpu": 1.0}
        trainable = tune.with_resources(tune.with_parameters(CandidateTrainable, payload=payload), resources)
        study = session.study
        searcher = StudySearcher(
            study,
            session.mutex,
            space,
            search,
            search.trials,
            worker=_driver_name(),
            screen=latency_screen(run, search, space, RWFileLock(run.lock_path("timing"))),
            max_errors=3 * search.workers,
            on_told=lambda: show_progress(bar, study),
        )
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,  # the searcher says when the search is finished
                max_concurrent_trials=search.workers,
                reuse_actors=True,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=f"search-{stamp}",
                storage_path=str(root / "tune"),
                failure_config=tune.FailureConfig(max_failures=search.max_failures),
                checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),  # the study is the state
                callbacks=[RetryReporter(searcher, search.max_failures, bar.write)],
                verbose=0,
            ),
        )
        try:
            tuner.fit()
        finally:
            searcher.stop_heartbeats()
        if searcher.errors and searcher.stopped_early:
            raise RuntimeError(
                f"{len(searcher.errors)} Ray trials failed even after {search.max_failures} retries each; "
                f"the last: {searcher.errors[-1]}. Tune's log is in {root / 'tune'}"
            )
