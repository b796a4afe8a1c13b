"""The one place that sets PyTorch's thread counts.

Two PyTorch processes each running two OpenMP threads on the same two cores slow each other down 10-80x (the
threads spin waiting for each other), so every process that runs models says how many threads it uses:

* :func:`torch_threads` sets ``torch.set_num_threads`` for a ``with`` block and restores it afterwards;
* :func:`child_thread_environment` sets ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` in ``os.environ`` while child
  processes are started inside it: a spawned child reads them when *it* imports torch, which happens before any
  of our code runs in it, so the variables are the only way to size its OpenMP pool from the start;
* :func:`configure_worker_threads` is the first call of such a child: intra-op and inter-op threads (the latter
  can only be set before the first parallel work of the process, so it is set once and never restored).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["THREAD_VARIABLES", "child_thread_environment", "configure_worker_threads", "torch_threads"]

THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _check(threads: int) -> int:
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after; None: no change."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(_check(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def child_thread_environment(threads: int) -> Iterator[dict[str, str]]:
    """``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = ``threads`` for processes started inside the block.

    The parent's own thread pool is already sized and is not affected; its environment is restored afterwards.
    """
    value = str(_check(threads))
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: value for name in THREAD_VARIABLES})
    try:
        yield {name: value for name in THREAD_VARIABLES}
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def configure_worker_threads(threads: int) -> None:
    """Size a worker process's thread pools: ``threads`` intra-op threads and one inter-op thread.

    Call it first thing in a worker process (started inside :func:`child_thread_environment`). The inter-op
    count can be set once per process, before any inter-op parallel work; a later call leaves it as it is.
    """
    torch.set_num_threads(_check(threads))
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran in this process
        torch.set_num_interop_threads(1)
