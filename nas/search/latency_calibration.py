"""Filling a space's latency table: blocks timed (replayed in their networks or alone), calibration networks.

See :mod:`nas.search.latency_table` for why blocks are replayed and how the fit copes with load.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from nas.search.block_timing import BlockTiming, time_in_chains
from nas.search.latency_blocks import SpaceLatencyTable, as_table_block, table_blocks, table_key
from profilers import STATISTICS, LatencyEntry, LatencyTable, measure_latency

if TYPE_CHECKING:
    from torch import nn

    from search_spaces import Architecture, LatencyBlock, SearchSpace

__all__ = ["calibrate", "check_passes", "extend_table", "onnx_call_overhead", "refine_table", "replays"]

Figures = dict[str, float]


def _isolated(table: LatencyTable, module: nn.Module, input_shape: Sequence[int], *, block: bool = False) -> Figures:
    """A module timed alone by ``measure_latency``; a ``block`` on ONNX Runtime less the cost of a call.

    Every ``session.run`` pays a fixed cost (argument conversion, output allocation, the executor's set-up) that a
    network pays once and a sum of separately timed blocks once per block: on networks of ~0.05 ms it would
    bias the sum by half. It is measured on a session whose graph is a single Identity on the block's input
    (:func:`onnx_call_overhead`) and taken off every statistic of the block (not below zero).
    """
    options = dict(table.latency_options)
    if table.backend == "onnxruntime":
        options.setdefault("exporter", "torchscript")
    result = measure_latency(
        module,
        tuple(input_shape),
        device=table.device,
        backend=table.backend,
        batch_size=table.batch_size,
        dtype=table.dtype,
        threads=table.threads,
        **options,
    )
    figures = {
        "median": result.median_ms,
        "p10": result.p10_ms,
        "p90": result.p90_ms,
        "min": result.min_ms,
        "repeats": float(result.repeats),
    }
    if block and table.backend == "onnxruntime":
        assert table.threads is not None
        call = onnx_call_overhead((table.batch_size, *input_shape), table.threads, table.device)
        for statistic in ("median", "p10", "p90", "min"):
            figures[statistic] = max(0.0, figures[statistic] - call[statistic])
    return figures


_CALL_OVERHEAD: dict[tuple[tuple[int, ...], int, str], Figures] = {}


def onnx_call_overhead(shape: Sequence[int], threads: int, device: str = "cpu") -> Figures:
    """What one ``session.run`` costs with nothing to compute: an Identity graph on a float32 input of ``shape``.

    Measured once per shape, thread count and device in a process (the protocol of ``profilers.timing``).
    """
    key = (tuple(int(s) for s in shape), int(threads), str(device))
    if key not in _CALL_OVERHEAD:
        import tempfile
        from pathlib import Path

        import numpy as np
        import onnx
        from onnx import TensorProto, helper

        from profilers import onnx_session, time_onnx_session

        graph = helper.make_graph(
            [helper.make_node("Identity", ["input"], ["logits"])],
            "call_overhead",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(key[0]))],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(key[0]))],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        with tempfile.TemporaryDirectory(prefix="nas-call-") as folder:
            path = Path(folder) / "identity.onnx"
            onnx.save(model, str(path))
            session = onnx_session(path, threads, device=device)
        result = time_onnx_session(session, np.zeros(key[0], dtype=np.float32))
        _CALL_OVERHEAD[key] = {
            "median": result.median_ms,
            "p10": result.p10_ms,
            "p90": result.p90_ms,
            "min": result.min_ms,
            "repeats": float(result.repeats),
        }
    return _CALL_OVERHEAD[key]


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


def replays(table: LatencyTable) -> bool:
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
    check_passes(passes)
    todo: dict[str, LatencyBlock] = {}
    chains: list[list[LatencyBlock]] = []
    for arch in archs:
        blocks = space.latency_blocks(arch)
        chosen = [b for b in blocks if (table.entry_key(table_key(b), b.input_shape) in table.entries) == refresh]
        if chosen:
            chains.append(blocks)
            for block in chosen:
                todo.setdefault(block.signature, block)
    runs: dict[str, list[Figures]] = {signature: [] for signature in todo}
    for p in range(passes if todo else 0):
        if replays(table):
            assert isinstance(table, SpaceLatencyTable) and table.threads is not None
            order = chains if p % 2 == 0 else chains[::-1]
            timings = time_in_chains(
                order, dtype=table.dtype, batch_size=table.batch_size, threads=table.threads, seed=p, **table.replay
            )
            for signature in todo:
                runs[signature].append(_figures(timings.blocks[signature]))
        else:
            for signature, block in todo.items():
                module = as_table_block(block, table.batch_size)[1]()
                runs[signature].append(_isolated(table, module, block.input_shape, block=True))
    return todo, runs


def extend_table(table: LatencyTable, space: SearchSpace, archs: Iterable[Architecture], *, passes: int = 1) -> int:
    """Measure the blocks of ``archs`` the table lacks (least of ``passes``); return how many were added."""
    todo, runs = _time_blocks(table, space, archs, passes, refresh=False)
    for signature, block in todo.items():
        key = table_key(block)
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
        key = table_key(block)
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


def check_passes(passes: int) -> None:
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
    check_passes(passes)
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
        if replays(table):
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
