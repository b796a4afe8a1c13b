"""Latency lookup table of a search space on one device: measure each block once, predict networks as sums.

As FBNet and Once-for-All do, a network's latency is predicted from latencies of its blocks measured once each
(``SearchSpace.latency_blocks``: stem, choice blocks / cell operations / MBConv blocks, head; keyed by
configuration and input shape, so architectures share them), stored in a :class:`profilers.LatencyTable`.

Where a block sum goes wrong, and what is done about it:

- *Context.* A block timed back to back with itself runs with its code and the framework's branch history
  hot; inside a network it follows other blocks. On this project's small networks most of a layer's time is
  per-call framework work, so isolated timings come out 5-40% short, unevenly (see ``nas.search.block_timing``).
  On the CPU with PyTorch eager the blocks are therefore timed *in their networks*: each architecture's
  blocks replayed in order, outputs feeding the next blocks, every block call timed alone. Elsewhere (CUDA,
  ONNX Runtime) each block is timed by ``profilers.measure_latency``.
- *Glue.* Container calls, the network's own ``forward``, flattening and identities are in no block: a
  per-network overhead, fitted on a few *calibration networks* (picked across the range of block sums) as the
  median of ``measured - sum(blocks)`` (medians, so that a disturbed network does not drag the fit). On ONNX
  Runtime every block is exported and timed in its own session, less the fixed cost of a ``session.run``
  (``onnx_call_overhead``: a network pays it once, a sum of blocks once per block); what ORT fuses across
  block boundaries is left to the fitted scale and overhead. With
  replayed timing each calibration network is timed right after the replays of its blocks, and
  its residual is taken against the block sum of that same moment, so a load that comes and goes cancels out.
  Where blocks are timed one at a time the networks are measured by ``profilers.measure_latency`` and, since
  the context effect grows with the sum, a scale is fitted too (``fit_scale``):
  ``latency = block_scale * sum + overhead_ms``, the scale the Theil-Sen estimate (median of pairwise
  slopes, within [0.5, 2]) when at least three calibration sums spread by 5%.
- *Load.* On a shared machine load only ever adds time. ``passes > 1`` measures every block and calibration
  network that many times and keeps for every statistic its smallest value over the passes; ``refine_table``
  and ``calibrate(refine=True)`` do the same later, at other moments.
  What no in-process measure removes is a busy *other* core slowing this one (shared caches and memory, or a
  hypervisor's siblings): figures taken minutes apart then differ by 10-50% here, the table's and a
  candidate's alike. Build the table and measure candidates on a quiet machine.

The table lives at ``<run>/latency_table.json`` (:func:`load_or_build`); it is reused while the device, its
name, backend, threads, batch size and dtype match and the space and its configuration are the same, and is
rebuilt otherwise. Blocks a table lacks are measured when first needed, replayed in the network that needs
them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.search.latency_blocks import SpaceLatencyTable, missing_blocks, table_blocks
from nas.search.latency_calibration import calibrate, extend_table, refine_table, replays
from nas.search.locks import exclusive_lock

if TYPE_CHECKING:
    from profilers import LatencyTable
    from search_spaces import Architecture, SearchSpace

__all__ = [
    "DEFAULT_REPLAY",
    "ONNX_TABLE_OPTIONS",
    "TABLE_NAME",
    "SpaceLatencyTable",
    "build_table",
    "calibrate",
    "extend_table",
    "load_or_build",
    "missing_blocks",
    "over_budget",
    "predict_latency",
    "refine_table",
    "table_blocks",
]

TABLE_NAME = "latency_table.json"

# Replayed block timing of a new table (see nas.search.block_timing.time_in_chains).
DEFAULT_REPLAY: dict[str, Any] = {"runs": 20, "warmup_runs": 3}
# How an ONNX Runtime table times its blocks and calibration networks (profilers.measure_latency options): the
# TorchScript exporter (a block exports in a tenth of a second), and at most half a second of samples each.
ONNX_TABLE_OPTIONS: dict[str, Any] = {"exporter": "torchscript", "max_time_s": 0.5}


# --- the public entry points ----------------------------------------------------------------------


def build_table(
    space: SearchSpace,
    archs: Sequence[Architecture],
    *,
    device: str = "cpu",
    threads: int = 1,
    batch_size: int = 1,
    backend: str = "eager",
    dtype: str = "float32",
    statistic: str = "median",
    latency_options: dict[str, Any] | None = None,
    replay: dict[str, Any] | None = None,
    fit_scale: bool | None = None,
    calibration: int = 8,
    calibration_archs: Sequence[Architecture] | None = None,
    passes: int = 2,
) -> SpaceLatencyTable:
    """Measure every distinct block of ``archs``, then calibrate on ``calibration`` networks.

    The calibration networks are picked among ``calibration_archs`` (default: ``archs``), spread over the range
    of their block sums; their blocks are measured too. ``latency_options`` go to ``profilers.measure_latency``
    (the calibration networks, and the blocks where they are not replayed); ``replay`` to the replayed block
    timing (default :data:`DEFAULT_REPLAY`; ``{}`` times blocks one at a time, as CUDA and ONNX Runtime tables
    always do). ``fit_scale`` defaults to whether blocks are timed one at a time.
    """
    if not archs:
        raise ValueError("build_table needs at least one architecture whose blocks to measure")
    options = dict(ONNX_TABLE_OPTIONS if backend == "onnxruntime" and latency_options is None else latency_options or {})
    table = SpaceLatencyTable(
        device=device,
        backend=backend,
        threads=threads,
        batch_size=batch_size,
        dtype=dtype,
        statistic=statistic,
        latency_options=options,
        space=space.name,
        space_config=space.config_dict(),
        replay=dict(DEFAULT_REPLAY if replay is None else replay),
    )
    table.fit_scale = not replays(table) if fit_scale is None else fit_scale
    pool = list(archs if calibration_archs is None else calibration_archs)
    extend_table(table, space, [*archs, *pool], passes=passes)
    calibrate(table, space, pool, count=calibration, passes=passes)
    return table


def predict_latency(
    table: LatencyTable, space: SearchSpace, arch: Architecture, *, measure_missing: bool = True
) -> float:
    """Predicted latency (ms, the table's statistic) of ``arch``'s network on the table's device.

    Blocks the table lacks are measured now when ``measure_missing`` (about a second for all of them: hold the
    run's timing lock), else a ``KeyError`` names the first missing one.
    """
    if measure_missing:
        extend_table(table, space, [arch])
    else:
        missing = missing_blocks(table, space, arch)
        if missing:
            raise KeyError(
                f"{len(missing)} block(s) of {arch.arch_id} are not in the latency table, e.g. {missing[0].signature}"
            )
    return table.predict(table_blocks(space, arch, batch_size=table.batch_size))


def over_budget(
    table: LatencyTable,
    space: SearchSpace,
    arch: Architecture,
    max_latency_ms: float,
    *,
    margin: float = 0.2,
    measure_missing: bool = True,
) -> bool:
    """Whether ``arch`` cannot meet ``max_latency_ms``: its prediction exceeds the budget by more than ``margin``.

    ``margin`` (a share of the budget) covers the prediction error, so that a candidate is skipped only when
    it is clearly too slow; see ``results/benchmarks/lut_prediction.json`` for the errors on this machine.
    """
    if not max_latency_ms > 0 or not margin >= 0:
        raise ValueError(f"need max_latency_ms > 0 and margin >= 0, got {max_latency_ms!r} and {margin!r}")
    return predict_latency(table, space, arch, measure_missing=measure_missing) > max_latency_ms * (1.0 + margin)


def load_or_build(
    run_dir: str | Path,
    space: SearchSpace,
    archs: Sequence[Architecture] | None = None,
    *,
    device: str = "cpu",
    threads: int = 1,
    batch_size: int = 1,
    backend: str = "eager",
    dtype: str = "float32",
    statistic: str = "median",
    latency_options: dict[str, Any] | None = None,
    replay: dict[str, Any] | None = None,
    sample_archs: int = 32,
    calibration: int = 8,
    passes: int | None = None,
    seed: int = 0,
) -> SpaceLatencyTable:
    """The table at ``<run_dir>/latency_table.json`` if it fits this setting and space, else a new one, saved.

    A new table measures the blocks of ``archs`` (default: ``sample_archs`` architectures drawn from a
    generator seeded with ``seed``) and calibrates on them. Processes of one run take turns (a file lock), so
    the table is built once. ``passes`` defaults to 2 for replayed (eager CPU) timing, 1 for ONNX Runtime, whose
    blocks are each exported.
    """
    if passes is None:
        passes = 1 if backend == "onnxruntime" else 2
    root = Path(run_dir)
    path = root / TABLE_NAME
    with exclusive_lock(root / ".latency_table.lock"):
        if path.is_file():
            try:
                found = SpaceLatencyTable.load(
                    path, device=device, backend=backend, threads=threads, batch_size=batch_size, dtype=dtype
                )
            except (ValueError, KeyError, TypeError, json.JSONDecodeError):
                found = None  # measured under another setting, or not a table: measured anew below
            if isinstance(found, SpaceLatencyTable) and found.matches_space(space):
                return found if found.statistic == statistic else found.with_statistic(statistic)
        if archs is None:
            rng = np.random.default_rng(seed)
            archs = [space.sample(rng) for _ in range(sample_archs)]
        table = build_table(
            space,
            archs,
            device=device,
            threads=threads,
            batch_size=batch_size,
            backend=backend,
            dtype=dtype,
            statistic=statistic,
            latency_options=latency_options,
            replay=replay,
            calibration=calibration,
            passes=passes,
        )
        table.save(path)
        return table
