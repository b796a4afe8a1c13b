"""The one place that sets thread counts: restored after a block, inherited by spawned workers."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest
import torch

from profilers import child_thread_environment, torch_threads


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    with torch_threads(wanted):
        assert torch.get_num_threads() == wanted
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be an integer >= 1"), torch_threads(0):
        pass


def _report(queue: mp.Queue) -> None:  # type: ignore[type-arg]
    import torch as child_torch

    queue.put((os.environ.get("OMP_NUM_THREADS"), child_torch.get_num_threads()))


def test_spawned_child_starts_with_the_thread_count() -> None:
    saved = os.environ.get("OMP_NUM_THREADS")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with child_thread_environment(1) as env:
        assert env["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
        proc = ctx.Process(target=_report, args=(queue,))
        proc.start()
    assert os.environ.get("OMP_NUM_THREADS") == saved  # the parent's environment is restored
    variable, threads = queue.get(timeout=120)
    proc.join(timeout=60)
    assert variable == "1" and threads == 1
