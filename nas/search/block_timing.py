"""Block latencies timed in their networks: each architecture's blocks replayed in order, every call timed alone.

Why not time each block back to back with itself (``profilers.measure_latency``)? Inside a network a block
follows *other* blocks: its code and the framework's branch history are not hot, and its input was just
written by the block before. Timed back to back, a NASNet cell's operations on 16x16 maps come out a fifth
faster than inside the network on average and some far more (a 7x7 max pooling three times faster), so no
single correction fits every architecture; timed in turns with every other block of a large table they come
out slower instead (their weights no longer in cache), by up to about a fifth for MBConv blocks. Replayed as their
network runs them, the blocks see the network's context, and a network is close to the plain sum of its
blocks plus a constant for what no block holds (container calls, the network's own ``forward``).

Method: every distinct block (by ``LatencyBlock.signature``) is built once, in eval mode and ``dtype``; each
chain (the blocks of one architecture) gets a fixed input drawn from a seeded generator and is run like
``search_spaces._blocks.run_blocks`` (outputs feed later blocks), ``warmup_runs`` times untimed then ``runs``
times with every block call bracketed by ``time.perf_counter_ns``. ``torch.inference_mode``, the thread count
set and restored, the garbage collector paused. A block's figures are the median, 10th and 90th percentiles
and minimum of all its timed calls, in every chain that holds it.

With ``networks``, the replays of a chain are followed by as many timed calls of its whole network on the same
input (back to back, as ``measure_latency`` runs a network; alternating call by call would keep the blocks'
and the network's separate weights both in cache and slow both): blocks and network are timed within a
fraction of a second, so a load that comes and goes shifts both alike and ``network - sum(blocks)`` (the
network's own overhead) is measured nearly free of it.

PyTorch eager on the CPU only: a CUDA call returns before its kernels finish (timing it would need a
synchronisation the network does not make), and ONNX Runtime runs whole sessions; there the table times each
block with ``profilers.measure_latency``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from profilers import DTYPES, gc_paused, torch_threads
from search_spaces import NETWORK_INPUT

if TYPE_CHECKING:
    from torch import nn

    from search_spaces import LatencyBlock

__all__ = ["BlockTiming", "ChainTimings", "time_in_chains"]


@dataclass(frozen=True)
class BlockTiming:
    """Per-call latency of one block over its timed calls (milliseconds)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    calls: int

    @classmethod
    def of(cls, times_ns: Sequence[int]) -> BlockTiming:
        ns = np.asarray(times_ns, dtype=np.float64)
        return cls(
            median_ms=float(np.median(ns)) / 1e6,
            p10_ms=float(np.percentile(ns, 10)) / 1e6,
            p90_ms=float(np.percentile(ns, 90)) / 1e6,
            min_ms=float(ns.min()) / 1e6,
            calls=len(times_ns),
        )


@dataclass(frozen=True)
class ChainTimings:
    """What :func:`time_in_chains` measured: every block by signature, and each chain's network if given."""

    blocks: dict[str, BlockTiming]
    networks: list[BlockTiming | None]


def _network_input(chain: Sequence[LatencyBlock]) -> tuple[int, ...]:
    for block in chain:
        for ref, shape in zip(block.sources, block.input_shapes):
            if ref == NETWORK_INPUT:
                return shape
    raise ValueError(f"no block of the chain reads the network input (first block: {chain[0].key!r})")


def time_in_chains(
    chains: Sequence[Sequence[LatencyBlock]],
    *,
    networks: Sequence[nn.Module | None] | None = None,
    dtype: str = "float32",
    batch_size: int = 1,
    threads: int = 1,
    runs: int = 20,
    warmup_runs: int = 3,
    seed: int = 0,
) -> ChainTimings:
    """Replay every chain ``runs`` times timing each block call, then (if given) time its network ``runs`` times."""
    if not chains or not all(chains):
        raise ValueError("need at least one chain, and at least one block in every chain")
    if networks is not None and len(networks) != len(chains):
        raise ValueError(f"networks must hold one module (or None) per chain, got {len(networks)} for {len(chains)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    for name, value in (("runs", runs), ("threads", threads), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(warmup_runs, bool) or not isinstance(warmup_runs, int) or warmup_runs < 0:
        raise ValueError(f"warmup_runs must be an integer >= 0, got {warmup_runs!r}")
    torch_dtype = DTYPES[dtype]
    modules: dict[str, nn.Module] = {}
    for chain in chains:
        for block in chain:
            if block.signature not in modules:
                modules[block.signature] = block.build().to(dtype=torch_dtype).eval()
    whole = [None if n is None else n.to(dtype=torch_dtype).eval() for n in (networks or [None] * len(chains))]
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn((batch_size, *_network_input(c)), generator=generator).to(torch_dtype) for c in chains]
    calls: dict[str, list[int]] = {signature: [] for signature in modules}
    network_calls: list[list[int]] = [[] for _ in chains]
    clock = time.perf_counter_ns
    with torch_threads(threads), gc_paused(), torch.inference_mode():
        for chain, x, network, network_record in zip(chains, inputs, whole, network_calls):
            steps = [(modules[b.signature], b.sources, calls[b.signature]) for b in chain]
            for run in range(warmup_runs + runs):
                outputs: list[torch.Tensor] = []
                for module, sources, record in steps:
                    args = [x if ref == NETWORK_INPUT else outputs[ref] for ref in sources]
                    t0 = clock()
                    out = module(*args)
                    elapsed = clock() - t0
                    outputs.append(out)
                    if run >= warmup_runs:
                        record.append(elapsed)
            if network is not None:
                for run in range(warmup_runs + runs):
                    t0 = clock()
                    network(x)
                    elapsed = clock() - t0
                    if run >= warmup_runs:
                        network_record.append(elapsed)
    return ChainTimings(
        blocks={signature: BlockTiming.of(times) for signature, times in calls.items()},
        networks=[BlockTiming.of(times) if times else None for times in network_calls],
    )
