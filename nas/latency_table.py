"""Latency lookup table of a search space on one device: measure each block once, predict networks as sums.

As FBNet and Once-for-All do, a network's latency is predicted from latencies of its blocks measured once each
(``SearchSpace.latency_blocks``: stem, choice blocks / cell operations / MBConv blocks, head; keyed by
configuration and input shape, so architectures share them), stored in a :class:`profilers.LatencyTable`.

Where a block sum goes wrong, and what is done about it:

- *Context.* A block timed back to back with itself runs with its code and the framework's branch history
  hot; inside a network it follows other blocks. On this project's small networks most of a layer's time is
  per-call framework work, so isolated timings come out 5-40% short, unevenly (see ``nas._block_timing``).
  On the CPU with PyTorch eager the blocks are therefore timed *in their networks*: each architecture's
  blocks replayed in order, outputs feeding the next blocks, every block call timed alone. Elsewhere (CUDA,
  ONNX Runtime) each block is timed by ``profilers.measure_latency``.
- *Glue.* Container calls, the network's own ``forward``, flattening and identities are in no block: a
  per-network overhead, fitted on a few *calibration networks* (picked across the range of block sums) as the
  median of ``measured - sum(blocks)`` (medians, so that a disturbed network does not drag the fit). With
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
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nas._block_timing import BlockTiming, time_in_chains
from profilers import STATISTICS, LatencyEntry, LatencyTable, measure_latency

if TYPE_CHECKING:
    from search_spaces import Architecture, LatencyBlock, SearchSpace

__all__ = [
    "DEFAULT_REPLAY",
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

# Replayed block timing of a new table (see nas._block_timing.time_in_chains).
DEFAULT_REPLAY: dict[str, Any] = {"runs": 20, "warmup_runs": 3}

# A slope is fitted only when the calibration sums spread by this share of their mean, and kept in these bounds.
_MIN_RELATIVE_SPREAD = 0.05
_SCALE_BOUNDS = (0.5, 2.0)

TableBlock = tuple[str, Callable[[], nn.Module], tuple[int, ...]]


@dataclass
class SpaceLatencyTable(LatencyTable):
    """A :class:`profilers.LatencyTable` of one search space's blocks, predicting with a fitted scale.

    ``space`` and ``space_config`` name what it was built for; ``block_scale`` multiplies the block sum
    (``predict = block_scale * block_sum + overhead_ms``), fitted only when ``fit_scale``, else 1;
    ``replay`` holds the options of the replayed block timing (empty: blocks are timed one at a time by
    ``measure_latency`` with ``latency_options``).
    """

    space: str = ""
    space_config: dict[str, Any] = field(default_factory=dict)
    block_scale: float = 1.0
    fit_scale: bool = False
    replay: dict[str, Any] = field(default_factory=dict)

    def predict(self, blocks: Sequence[Any]) -> float:
        return self.block_scale * self.block_sum(blocks) + self.overhead_ms

    def fit_overhead(self) -> float:
        """Fit ``block_scale`` and ``overhead_ms`` on the calibration networks; return the overhead.

        A record's block sum is the one timed with the network (``block_sum_ms``) when it has one, else the sum
        of the table's entries.
        """
        sums = [
            rec["block_sum_ms"][self.statistic]
            if "block_sum_ms" in rec
            else sum(self.entries[k].value(self.statistic) for k in rec["block_keys"])
            for rec in self.calibration
        ]
        measured = [rec["measured_ms"][self.statistic] for rec in self.calibration]
        self.block_scale, self.overhead_ms = _fit(sums, measured, slope=self.fit_scale)
        return self.overhead_ms

    def with_statistic(self, statistic: str) -> SpaceLatencyTable:
        """A copy adding up ``statistic`` instead, refitted on the same calibration."""
        data = self.to_dict()
        data["statistic"] = statistic
        table = SpaceLatencyTable.from_dict(data)
        table.fit_overhead()
        return table

    def matches_space(self, space: SearchSpace) -> bool:
        return self.space == space.name and self.space_config == space.config_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "space": self.space,
            "space_config": dict(self.space_config),
            "block_scale": self.block_scale,
            "fit_scale": self.fit_scale,
            "replay": dict(self.replay),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpaceLatencyTable:
        table = super().from_dict(data)
        assert isinstance(table, SpaceLatencyTable)
        table.space = str(data.get("space", ""))
        table.space_config = dict(data.get("space_config", {}))
        table.block_scale = float(data.get("block_scale", 1.0))
        table.fit_scale = bool(data.get("fit_scale", False))
        table.replay = dict(data.get("replay", {}))
        return table

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON atomically (a temporary file renamed over ``path``)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=1)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target


def _fit(sums: Sequence[float], measured: Sequence[float], *, slope: bool) -> tuple[float, float]:
    """``(scale, overhead)`` of ``measured ~ scale * sums + overhead``, robust to a few disturbed networks.

    The overhead is the median residual; with ``slope`` (and at least three sums spread enough to tell one)
    the scale is the Theil-Sen estimate, the median of the pairwise slopes, kept in ``_SCALE_BOUNDS``.
    """
    if not sums:
        return 1.0, 0.0
    scale = 1.0
    mean_x = statistics.fmean(sums)
    if slope and len(sums) >= 3 and mean_x > 0 and max(sums) - min(sums) >= _MIN_RELATIVE_SPREAD * mean_x:
        pairs = [
            (measured[j] - measured[i]) / (sums[j] - sums[i])
            for i in range(len(sums))
            for j in range(i + 1, len(sums))
            if sums[j] != sums[i]
        ]
        scale = min(max(statistics.median(pairs), _SCALE_BOUNDS[0]), _SCALE_BOUNDS[1])
    return scale, statistics.median(y - scale * x for x, y in zip(sums, measured))


# --- blocks as table entries ----------------------------------------------------------------------


class _FixedInputs(nn.Module):
    """A multi-input block timed on its first input: the other inputs are fixed tensors held as buffers."""

    def __init__(self, block: nn.Module, extra: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.block = block
        self.count = len(extra)
        for index, tensor in enumerate(extra):
            self.register_buffer(f"input{index + 1}", tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, *(getattr(self, f"input{i + 1}") for i in range(self.count)))


def _with_fixed_inputs(block: LatencyBlock, batch_size: int, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    extra = [torch.randn((batch_size, *shape), generator=generator) for shape in block.input_shapes[1:]]
    return _FixedInputs(block.build(), extra)


def _table_key(block: LatencyBlock) -> str:
    """The block's key, plus the shapes of its inputs after the first (the table adds the first)."""
    if len(block.input_shapes) == 1:
        return block.key
    return f"{block.key}+" + "+".join("x".join(str(d) for d in s) for s in block.input_shapes[1:])


def _as_table_block(block: LatencyBlock, batch_size: int) -> TableBlock:
    if len(block.input_shapes) == 1:
        return (block.key, block.build, block.input_shape)
    return (_table_key(block), partial(_with_fixed_inputs, block, batch_size), block.input_shape)


def table_blocks(space: SearchSpace, arch: Architecture, *, batch_size: int = 1) -> list[TableBlock]:
    """``(key, module factory, input shape)`` of every block of ``arch``, as ``LatencyTable.predict`` takes them.

    A multi-input block's factory holds its other inputs as fixed tensors of batch ``batch_size``.
    """
    return [_as_table_block(block, batch_size) for block in space.latency_blocks(arch)]


def missing_blocks(table: LatencyTable, space: SearchSpace, arch: Architecture) -> list[LatencyBlock]:
    """The blocks of ``arch`` the table has not measured yet."""
    return [b for b in space.latency_blocks(arch) if (_table_key(b), b.input_shape) not in table]


# --- measuring ------------------------------------------------------------------------------------

Figures = dict[str, float]


def _isolated(table: LatencyTable, module: nn.Module, input_shape: Sequence[int]) -> Figures:
    result = measure_latency(
        module,
        tuple(input_shape),
        device=table.device,
        backend=table.backend,
        batch_size=table.batch_size,
        dtype=table.dtype,
        threads=table.threads,
        **table.latency_options,
    )
    return {
        "median": result.median_ms,
        "p10": result.p10_ms,
        "p90": result.p90_ms,
        "min": result.min_ms,
        "repeats": float(result.repeats),
    }


def _figures(timing: BlockTiming) -> Figures:
    return {
        "median": timing.median_ms,
        "p10": timing.p10_ms,
        "p90": timing.p90_ms,
        "min": timing.min_ms,
        "repeats": float(timing.calls),
    }


def _least(runs: Sequence[Figures]) -> Figures:
    """Per statistic, the smallest value over the passes; repeats add up."""
    best = {k: min(r[k] for r in runs) for k in ("median", "p10", "p90", "min")}
    best["repeats"] = sum(r["repeats"] for r in runs)
    return best


def _replays(table: LatencyTable) -> bool:
    """Whether the table times its blocks replayed in their networks (CPU, eager, replay options set)."""
    return (
        isinstance(table, SpaceLatencyTable)
        and bool(table.replay)
        and table.backend == "eager"
        and torch.device(table.device).type == "cpu"
    )


def _entry(key: str, shape: tuple[int, ...], runs: Sequence[Figures]) -> LatencyEntry:
    best = _least(runs)
    return LatencyEntry(
        key=key,
        input_shape=shape,
        median_ms=best["median"],
        p10_ms=best["p10"],
        p90_ms=best["p90"],
        min_ms=best["min"],
        repeats=int(best["repeats"]),
    )


def _time_blocks(
    table: LatencyTable, space: SearchSpace, archs: Iterable[Architecture], passes: int, *, refresh: bool
) -> tuple[dict[str, LatencyBlock], dict[str, list[Figures]]]:
    """Time the blocks of ``archs`` the table lacks (``refresh``: those it has), ``passes`` times each.

    Replayed timing runs the networks of the architectures that hold such a block (each pass in the other
    order); the figures of the other blocks of those networks are dropped.
    """
    _check_passes(passes)
    todo: dict[str, LatencyBlock] = {}
    chains: list[list[LatencyBlock]] = []
    for arch in archs:
        blocks = space.latency_blocks(arch)
        chosen = [b for b in blocks if (table.entry_key(_table_key(b), b.input_shape) in table.entries) == refresh]
        if chosen:
            chains.append(blocks)
            for block in chosen:
                todo.setdefault(block.signature, block)
    runs: dict[str, list[Figures]] = {signature: [] for signature in todo}
    for p in range(passes if todo else 0):
        if _replays(table):
            assert isinstance(table, SpaceLatencyTable) and table.threads is not None
            order = chains if p % 2 == 0 else chains[::-1]
            timings = time_in_chains(
                order, dtype=table.dtype, batch_size=table.batch_size, threads=table.threads, seed=p, **table.replay
            )
            for signature in todo:
                runs[signature].append(_figures(timings.blocks[signature]))
        else:
            for signature, block in todo.items():
                module = _as_table_block(block, table.batch_size)[1]()
                runs[signature].append(_isolated(table, module, block.input_shape))
    return todo, runs


def extend_table(table: LatencyTable, space: SearchSpace, archs: Iterable[Architecture], *, passes: int = 1) -> int:
    """Measure the blocks of ``archs`` the table lacks (least of ``passes``); return how many were added."""
    todo, runs = _time_blocks(table, space, archs, passes, refresh=False)
    for signature, block in todo.items():
        key = _table_key(block)
        table.entries[table.entry_key(key, block.input_shape)] = _entry(key, block.input_shape, runs[signature])
    return len(todo)


def refine_table(table: LatencyTable, space: SearchSpace, archs: Iterable[Architecture], *, passes: int = 1) -> int:
    """Time again the blocks of ``archs`` the table holds; keep per statistic the least of old and new figures.

    Load only ever adds time: on a shared machine, refining at other moments brings the entries to what the
    quietest of those moments gave (the way the benchmark interleaves table passes with network measurements).
    Returns how many entries were refined; blocks the table lacks are left to :func:`extend_table`.
    """
    todo, runs = _time_blocks(table, space, archs, passes, refresh=True)
    for signature, block in todo.items():
        key = _table_key(block)
        entry_key = table.entry_key(key, block.input_shape)
        old = table.entries[entry_key]
        before: Figures = {
            "median": old.median_ms,
            "p10": old.p10_ms,
            "p90": old.p90_ms,
            "min": old.min_ms,
            "repeats": float(old.repeats),
        }
        table.entries[entry_key] = _entry(key, block.input_shape, [before, *runs[signature]])
    return len(todo)


def _check_passes(passes: int) -> None:
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be an integer >= 1, got {passes!r}")


def _spread_pick(sums: Sequence[float], count: int) -> list[int]:
    """Indices of ``count`` of ``sums`` spread evenly over their range (the smallest and largest included)."""
    order = sorted(range(len(sums)), key=lambda i: sums[i])
    if count >= len(order):
        return order
    if count == 1:
        return [order[len(order) // 2]]
    picks = {order[round(j * (len(order) - 1) / (count - 1))] for j in range(count)}
    return sorted(picks, key=lambda i: sums[i])


def calibrate(
    table: SpaceLatencyTable,
    space: SearchSpace,
    candidates: Sequence[Architecture],
    *,
    count: int,
    passes: int = 1,
    refine: bool = False,
) -> list[Architecture]:
    """Measure ``count`` of ``candidates`` (spread over their block sums) end to end and fit the table.

    With replayed timing every network is timed right after the replays of its blocks, and its
    residual is taken against the block sum of that same window (``block_sum_ms`` in the record), so that load
    shifts both alike; otherwise networks are measured by ``profilers.measure_latency`` against the table's
    entries. Per network and statistic the pass where the network was fastest is kept. With ``refine`` the
    table's calibration networks found among ``candidates`` are measured again instead (``count`` is then
    ignored) and their earlier figures compete too, as :func:`refine_table` does for blocks. The candidates'
    blocks are measured first if the table lacks them. Returns the calibration networks.
    """
    _check_passes(passes)
    if count < 1 or not candidates:
        raise ValueError(f"calibration needs count >= 1 and at least one candidate, got {count} and {len(candidates)}")
    extend_table(table, space, candidates, passes=passes)
    blocks = [table_blocks(space, arch, batch_size=table.batch_size) for arch in candidates]
    index = {arch.arch_id: i for i, arch in enumerate(candidates)}
    previous = {r["arch_id"]: r for r in table.calibration if r.get("arch_id") in index} if refine else {}
    chosen = [index[k] for k in previous] or _spread_pick([table.block_sum(b) for b in blocks], count)
    models = {i: space.build(candidates[i]) for i in chosen}
    shapes = {i: tuple(space.input_shape(1, candidates[i])[1:]) for i in chosen}
    chains = {i: space.latency_blocks(candidates[i]) for i in chosen}
    runs: dict[int, list[tuple[Figures, Figures | None]]] = {i: [] for i in chosen}
    for p in range(passes):
        order = chosen if p % 2 == 0 else chosen[::-1]
        if _replays(table):
            assert table.threads is not None
            timed = time_in_chains(
                [chains[i] for i in order],
                networks=[models[i] for i in order],
                dtype=table.dtype,
                batch_size=table.batch_size,
                threads=table.threads,
                seed=1000 + p,
                **table.replay,
            )
            for i, network in zip(order, timed.networks):
                assert network is not None
                sums = {st: sum(getattr(timed.blocks[b.signature], f"{st}_ms") for b in chains[i]) for st in STATISTICS}
                runs[i].append((_figures(network), sums))
        else:
            for i in order:
                runs[i].append((_isolated(table, models[i], shapes[i]), None))
    for i in chosen:
        if candidates[i].arch_id in previous:
            old = previous[candidates[i].arch_id]
            runs[i].append((dict(old["measured_ms"]), old.get("block_sum_ms")))
    records = []
    for i in chosen:
        record: dict[str, Any] = {
            "arch_id": candidates[i].arch_id,
            "input_shape": list(shapes[i]),
            "block_keys": [table.entry_key(key, shape) for key, _, shape in blocks[i]],
            "measured_ms": {},
        }
        for st in STATISTICS:
            fastest = min(range(len(runs[i])), key=[run[0][st] for run in runs[i]].__getitem__)
            network_figures, window_sums = runs[i][fastest]
            record["measured_ms"][st] = network_figures[st]
            if window_sums is not None:
                record.setdefault("block_sum_ms", {})[st] = window_sums[st]
        records.append(record)
    table.calibration = records
    table.fit_overhead()
    return [candidates[i] for i in chosen]


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
    table = SpaceLatencyTable(
        device=device,
        backend=backend,
        threads=threads,
        batch_size=batch_size,
        dtype=dtype,
        statistic=statistic,
        latency_options=dict(latency_options or {}),
        space=space.name,
        space_config=space.config_dict(),
        replay=dict(DEFAULT_REPLAY if replay is None else replay),
    )
    table.fit_scale = not _replays(table) if fit_scale is None else fit_scale
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
    passes: int = 2,
    seed: int = 0,
) -> SpaceLatencyTable:
    """The table at ``<run_dir>/latency_table.json`` if it fits this setting and space, else a new one, saved.

    A new table measures the blocks of ``archs`` (default: ``sample_archs`` architectures drawn from a
    generator seeded with ``seed``) and calibrates on them. Processes of one run take turns (a file lock), so
    the table is built once.
    """
    from nas.locks import exclusive_lock

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
