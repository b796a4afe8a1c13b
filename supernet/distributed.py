"""Distributed supernet training under torchrun: DistributedDataParallel, one path a step on every rank.

``torchrun --nproc_per_node N -m nas train-supernet --config C --out D`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment (several machines:
the same command on each, with ``--nnodes`` and a rendezvous endpoint). :func:`init_distributed` reads them and
joins the process group; :func:`train_supernet` takes the resulting :class:`DistributedContext`.

Decisions:
- **Backend**: NCCL on CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU.
- **Global batch**: ``batch_size`` is the global batch, split evenly over the ranks (it must divide), so a
  run's result does not depend on how many processes computed it, and resuming with another world size
  continues the same schedule.
- **Data**: each epoch one permutation of the training set drawn from ``seed + epoch`` (the same one a
  single process uses), dealt out rank by rank as ``DistributedSampler`` does (rank ``r`` takes positions
  ``r, r + N, ...``): the union of the ranks' batches of step ``k`` is the single process's batch ``k``.
- **Paths**: every rank must run the same path each step (DDP all-reduces the gradients of one graph).
  :class:`StepSeededSampler` reseeds the path sampler's generator from ``(seed, global step)`` before each
  step, so the path is a function of the step alone: the same on every rank, after any resume.
- **Unused parameters**: a step trains one path, so most of the supernet gets no gradient;
  ``find_unused_parameters=True``, and the path being the same on all ranks keeps the reducers in step.
- **Batch norm**: per-rank statistics by default (as DDP does); ``sync_bn: true`` synchronises them
  (``torch.nn.SyncBatchNorm`` on CUDA, :class:`supernet.sync_bn.GlobalBatchNorm2d` on the CPU).
- **Checkpoints**: rank 0 alone writes them (atomically, ``supernet.checkpoint``); the others wait at a
  barrier, so no rank starts the next epoch before the checkpoint of the last is on disk. Every rank resumes
  from the same file (on several machines, put the output directory on a shared file system).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, TensorDataset

from supernet.data import make_loader
from supernet.samplers import PathSampler

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from search_spaces import Architecture

__all__ = [
    "DistributedContext",
    "ShardSampler",
    "StepSeededSampler",
    "init_distributed",
    "launched_by_torchrun",
    "main_rank_first",
    "rank_seed",
    "reduce_epoch_metrics",
    "save_on_main",
    "shard_loader",
    "shutdown_distributed",
    "wrap_model",
]

_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the training job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: writes checkpoints, logs, shows progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True when the process was started by torchrun (its variables are in the environment)."""
    env = os.environ if environ is None else environ
    return all(name in env for name in _TORCHRUN_VARIABLES)


def init_distributed(
    device: str | None = None, timeout_s: float = 1800.0, environ: Mapping[str, str] | None = None
) -> DistributedContext | None:
    """Join torchrun's process group (NCCL on CUDA, gloo on the CPU); None when not launched by torchrun.

    ``device``: ``"cuda"`` or ``"cpu"``; default CUDA when available. ``timeout_s``: how long a collective may
    wait for a missing rank before failing (a rank killed mid-epoch ends the others with an error).
    """
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return None
    rank, local_rank, world = int(env["RANK"]), int(env["LOCAL_RANK"]), int(env["WORLD_SIZE"])
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        where, backend = torch.device("cuda", local_rank), "nccl"
    else:
        where, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world,
            timeout=dt.timedelta(seconds=timeout_s),
            device_id=where if use_cuda else None,
        )
    return DistributedContext(rank, local_rank, world, where, backend)


def shutdown_distributed(ctx: DistributedContext | None) -> None:
    """Leave the process group (at the end of the job, on every rank)."""
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistributedContext, *, sync_bn: bool = False) -> nn.Module:
    """``model`` (already on ``ctx.device``) wrapped for DDP; its batch norms synchronised when ``sync_bn``.

    The returned wrapper is what runs forward and backward; ``model`` itself keeps the weights (and is what
    checkpoints save, so they load without DDP).
    """
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn and ctx.world_size > 1:
        if ctx.device.type == "cuda":
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            assert converted is model or isinstance(model, nn.BatchNorm2d)
        else:
            from supernet.sync_bn import convert_to_global_batch_norm

            convert_to_global_batch_norm(model)
    ids = [ctx.device.index or 0] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


class StepSeededSampler(PathSampler):
    """Wraps a path sampler so that the paths of step ``k`` come from a generator seeded by ``(seed, k)``.

    ``sample()`` is called ``paths_per_step`` times a step; before the first path of a step the inner
    sampler's generator is reseeded. The state (for checkpoints) is the inner sampler's, so a checkpoint
    written with or without this wrapper resumes under either.
    """

    def __init__(self, inner: PathSampler, seed: int, first_step: int, paths_per_step: int = 1) -> None:
        super().__init__(inner.space, seed)
        self.inner = inner
        self.paths_per_step = paths_per_step
        self.step = first_step
        self._drawn = 0

    def sample(self) -> Architecture:
        if self._drawn == self.paths_per_step:
            self.step += 1
            self._drawn = 0
        if self._drawn == 0:
            self.inner.rng = np.random.default_rng([self.seed, self.step])
        self._drawn += 1
        return self.inner.sample()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class ShardSampler(Sampler[int]):
    """This rank's share of one epoch's permutation (``seed + epoch``), as ``DistributedSampler(drop_last=True)``."""

    def __init__(self, size: int, ctx: DistributedContext, seed: int, epoch: int) -> None:
        self.size, self.rank, self.world, self.seed, self.epoch = size, ctx.rank, ctx.world_size, seed, epoch
        self.per_rank = size // ctx.world_size

    def __iter__(self) -> Iterator[int]:
        # The order in which the single-process loader (supernet.data.make_loader) visits the samples this epoch.
        indices = TensorDataset(torch.arange(self.size))
        (order,) = next(iter(make_loader(indices, self.size, shuffle=True, seed=self.seed + self.epoch)))
        order = order[: self.per_rank * self.world]
        return iter(order[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return self.per_rank


def shard_loader(
    dataset: Dataset[Any], global_batch: int, ctx: DistributedContext, *, seed: int, epoch: int
) -> DataLoader[Any]:
    """Batches of ``global_batch / world_size`` samples of this rank's share of epoch ``epoch``."""
    if global_batch % ctx.world_size:
        raise ValueError(
            f"batch_size {global_batch} (the global batch) must be divisible by the number of processes {ctx.world_size}"
        )
    local = global_batch // ctx.world_size
    shard = ShardSampler(len(dataset), ctx, seed, epoch)  # type: ignore[arg-type]
    if isinstance(dataset, TensorDataset):
        return DataLoader(dataset, sampler=BatchSampler(shard, local, drop_last=True), batch_size=None, num_workers=0)
    return DataLoader(dataset, sampler=shard, batch_size=local, drop_last=True, num_workers=0)


def reduce_epoch_metrics(metrics: Mapping[str, float], ctx: DistributedContext) -> dict[str, float]:
    """An epoch's metrics over all ranks: loss and accuracy averaged, images per second summed."""
    keys = ("loss", "accuracy", "images_per_s", "seconds")
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(values)
    loss, accuracy, images, seconds = values.tolist()
    world = ctx.world_size
    return {**metrics, "loss": loss / world, "accuracy": accuracy / world, "images_per_s": images, "seconds": seconds / world}


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for torch's generator on ``rank`` from epoch ``epoch`` on: distinct per rank (dropout masks)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def save_on_main(ctx: DistributedContext | None, state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Rank 0 writes the checkpoint (atomically); every rank then waits until it is on disk."""
    from supernet.checkpoint import save_checkpoint

    if ctx is None or ctx.is_main:
        save_checkpoint(state, path)
    if ctx is not None:
        ctx.barrier()


@contextlib.contextmanager
def main_rank_first(ctx: DistributedContext | None) -> Iterator[bool]:
    """Rank 0 runs the block first (e.g. creating the run directory), the others after it; yields ``is_main``."""
    if ctx is None:
        yield True
        return
    if not ctx.is_main:
        ctx.barrier()
    try:
        yield ctx.is_main
    finally:
        if ctx.is_main:
            ctx.barrier()
