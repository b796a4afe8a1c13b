"""The Ray Tune trainable of engine `ray`: one trial scores one candidate.

A class trainable rather than a function: with ``reuse_actors=True`` Tune hands the next trial to the
same actor through ``reset_config``, and the actor keeps its ``Evaluator`` (supernet rebuilt, data in
memory) as an attribute instead of in a process-wide cache. Everything the actor needs travels in one
:class:`TrialPayload` put into the object store once by the driver (``tune.with_parameters``): the
supernet's weights, the data, the training and search settings. A worker node needs the project's code
and nothing else: no checkpoint file, no dataset, no access to the Optuna storage.

A candidate that cannot be evaluated is reported with an ``error`` key (the search goes on, Tune does
not retry it); a worker process that dies is an error of the trial, which Tune retries on a new actor.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

if TYPE_CHECKING:
    from torch.utils.data import TensorDataset

    from nas.core.data import DataBundle
    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig
    from nas.search.candidate import Evaluator
    from nas.search.locks import RWFileLock
    from supernet import TrainConfig

__all__ = ["CandidateTrainable", "TrialPayload", "make_payload"]

ARCH_KEY = "arch"  # the trial's config: the architecture as JSON text
TRIAL_KEY = "optuna_trial"  # and the number of its Optuna trial


@dataclass(frozen=True)
class TrialPayload:
    """What every trial actor reads from the object store (once per actor)."""

    supernet: dict[str, Any]  # {"space": {"name", "config"}, "model": state dict} of the training checkpoint
    data: DataBundle  # train and val splits (the test split is left out)
    train_cfg: TrainConfig
    search: SearchConfig
    threads: int  # torch threads of each trial process
    driver_host: str
    timing_lock: str | None  # the run's timing lock file (on the driver's host); None: no exclusive timing
    run_key: str  # a short digest of the run directory: the timing lock's name on other hosts


def make_payload(
    run: RunDir, data: DataBundle, train_cfg: TrainConfig, search: SearchConfig, threads: int
) -> TrialPayload:
    import dataclasses

    from supernet import load_checkpoint

    state = load_checkpoint(run.require_supernet())
    without_test = dataclasses.replace(data, test=_empty_like(data.test))
    return TrialPayload(
        supernet={"space": state["space"], "model": state["model"]},
        data=without_test,
        train_cfg=train_cfg,
        search=search,
        threads=threads,
        driver_host=socket.gethostname(),
        timing_lock=str(run.lock_path("timing")) if search.exclusive_timing else None,
        run_key=hashlib.sha256(str(run.root.resolve()).encode()).hexdigest()[:12],
    )


def _empty_like(dataset: TensorDataset) -> TensorDataset:
    from torch.utils.data import TensorDataset

    return TensorDataset(*(t[:0] for t in dataset.tensors))


def _timing_lock(payload: TrialPayload) -> RWFileLock | None:
    """The run's lock on the driver's host; a per-host lock file in the temporary folder elsewhere."""
    from nas.search.locks import RWFileLock

    if payload.timing_lock is None:
        return None
    if socket.gethostname() == payload.driver_host:
        return RWFileLock(Path(payload.timing_lock))
    return RWFileLock(Path(tempfile.gettempdir()) / f"nas-timing-{payload.run_key}.lock")


class CandidateTrainable(tune.Trainable):
    """Scores the architecture of its config and reports every metric in one result (``done``)."""

    def setup(self, config: dict[str, Any], payload: TrialPayload) -> None:  # type: ignore[override]
        import ray

        from nas.search.candidate import Evaluator
        from profilers import configure_worker_threads
        from search_spaces import get_space
        from supernet import build_supernet

        configure_worker_threads(payload.threads)
        space = get_space(payload.supernet["space"]["name"], payload.supernet["space"]["config"])
        supernet = build_supernet(space, seed=0)  # initial weights are overwritten next
        supernet.load_state_dict(payload.supernet["model"])
        self.evaluator: Evaluator = Evaluator(
            supernet.eval(), payload.data, payload.train_cfg, payload.search, lock=_timing_lock(payload)
        )
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.node = ray.get_runtime_context().get_node_id()

    def step(self) -> dict[str, Any]:
        from search_spaces import Architecture

        where = {"worker": self.worker, "node": self.node, "done": True}
        try:
            arch = self.evaluator.supernet.space.validate(Architecture.from_json(self.config[ARCH_KEY]))
            metrics = self.evaluator.evaluate(arch)
        except Exception as err:  # a candidate that cannot be evaluated fails alone, the search goes on
            return {"error": f"{type(err).__name__}: {err}\n{traceback.format_exc()}", **where}
        return {**metrics, **where}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        return True  # the evaluator does not depend on the trial's config: the actor takes the next trial as is
