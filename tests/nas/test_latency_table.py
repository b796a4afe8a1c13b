"""Latency lookup table of a space: build, predict, save, load, reuse, rebuild (timings kept tiny, never asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nas.search.block_timing import time_in_chains
from nas.search.latency_table import (
    TABLE_NAME,
    SpaceLatencyTable,
    build_table,
    calibrate,
    extend_table,
    load_or_build,
    missing_blocks,
    over_budget,
    predict_latency,
    refine_table,
    table_blocks,
)
from profilers import measure_latency
from search_spaces import SearchSpace, get_space

torch.set_num_threads(1)

QUICK: dict[str, Any] = {
    "warmup": 1,
    "warmup_time_s": 0.0,
    "repeats": 5,
    "min_time_s": 0.0,
    "noisy_threshold": math.inf,
}
QUICK_REPLAY: dict[str, Any] = {"runs": 3, "warmup_runs": 1}


def _space(name: str = "shufflenet") -> SearchSpace:
    return get_space(name, {"layout": "small"})


def _build(space: SearchSpace, archs: list[Any], **kwargs: Any) -> SpaceLatencyTable:
    options: dict[str, Any] = {
        "threads": 1,
        "latency_options": QUICK,
        "replay": QUICK_REPLAY,
        "calibration": 2,
        "passes": 1,
    }
    return build_table(space, archs, **{**options, **kwargs})


@pytest.fixture(scope="module")
def shufflenet_table() -> tuple[SearchSpace, list[Any], SpaceLatencyTable]:
    space = _space()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(3)]
    return space, archs, _build(space, archs)


def test_table_measures_each_distinct_block_once(shufflenet_table: Any) -> None:
    space, archs, table = shufflenet_table
    signatures = {b.signature for a in archs for b in space.latency_blocks(a)}
    assert len(table) == len(signatures)
    assert all(e.median_ms > 0 and e.min_ms <= e.p10_ms <= e.median_ms <= e.p90_ms for e in table.entries.values())
    assert len(table.calibration) == 2 and table.block_scale == 1.0 and not table.fit_scale
    for record in table.calibration:  # replayed: residuals against the block sums of the same moment
        assert set(record["block_sum_ms"]) == set(record["measured_ms"]) == {"median", "p10", "min"}
    residuals = [r["measured_ms"]["median"] - r["block_sum_ms"]["median"] for r in table.calibration]
    assert table.overhead_ms == pytest.approx(sorted(residuals)[0] / 2 + sorted(residuals)[1] / 2)
    assert table.space == "shufflenet" and table.space_config == space.config_dict()
    assert table.replay == QUICK_REPLAY and table.threads == 1
    assert extend_table(table, space, archs) == 0  # nothing new to measure


def test_prediction_is_positive_and_sane(shufflenet_table: Any) -> None:
    space, archs, table = shufflenet_table
    predicted = predict_latency(table, space, archs[0], measure_missing=False)
    measured = measure_latency(space.build(archs[0]), space.input_shape(1, archs[0])[1:], threads=1, **QUICK)
    assert predicted > 0
    # A loose range only: the figures come from a shared machine and a handful of runs.
    assert measured.min_ms / 5 < predicted < measured.median_ms * 5
    assert predicted == pytest.approx(table.predict(table_blocks(space, archs[0])))


def test_refining_keeps_the_least_figures(shufflenet_table: Any) -> None:
    space, archs, built = shufflenet_table
    table = SpaceLatencyTable.from_dict(built.to_dict())
    before = dict(table.entries)
    assert refine_table(table, space, archs) == len(before)
    for key, entry in table.entries.items():
        assert entry.median_ms <= before[key].median_ms and entry.min_ms <= before[key].min_ms
        assert entry.repeats > before[key].repeats
    calibration = [dict(r["measured_ms"]) for r in table.calibration]
    chosen = calibrate(table, space, archs, count=1, refine=True)  # the same two networks, measured again
    assert (
        [a.arch_id for a in chosen]
        == [r["arch_id"] for r in table.calibration]
        == [r["arch_id"] for r in built.calibration]
    )
    for old, record in zip(calibration, table.calibration):
        assert all(record["measured_ms"][st] <= old[st] for st in old)


def test_over_budget_applies_the_margin(shufflenet_table: Any) -> None:
    space, archs, table = shufflenet_table
    predicted = predict_latency(table, space, archs[1], measure_missing=False)
    assert over_budget(table, space, archs[1], predicted / 1.3, margin=0.2)
    assert not over_budget(table, space, archs[1], predicted / 1.1, margin=0.2)
    assert not over_budget(table, space, archs[1], predicted * 2, margin=0.0)
    with pytest.raises(ValueError, match="max_latency_ms > 0"):
        over_budget(table, space, archs[1], 0.0)


def test_missing_blocks_are_named_or_measured(shufflenet_table: Any) -> None:
    space, _, built = shufflenet_table
    table = SpaceLatencyTable.from_dict(built.to_dict())  # a copy: the module's table stays as built
    arch = space.make_arch({f"layer_{i}": "xception" for i in range(7)})
    missing = missing_blocks(table, space, arch)
    if not missing:  # the three sampled architectures happened to hold every xception block
        table.entries.pop(next(iter(k for k in table.entries if "xception" in k)))
        missing = missing_blocks(table, space, arch)
    with pytest.raises(KeyError, match="not in the latency table"):
        predict_latency(table, space, arch, measure_missing=False)
    before = len(table)
    assert predict_latency(table, space, arch) > 0
    assert len(table) == before + len(missing)
    assert missing_blocks(table, space, arch) == []


def test_save_load_round_trip_and_refusal(shufflenet_table: Any, tmp_path: Path) -> None:
    _, _, table = shufflenet_table
    path = table.save(tmp_path / "t.json")
    again = SpaceLatencyTable.load(path, threads=1)
    assert isinstance(again, SpaceLatencyTable) and again.to_dict() == table.to_dict()
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind
    with pytest.raises(ValueError, match="threads"):
        SpaceLatencyTable.load(path, threads=2)
    median = table.with_statistic("min")
    assert median.statistic == "min" and isinstance(median, SpaceLatencyTable) and median.space == table.space


def test_load_or_build_reuses_and_rebuilds(tmp_path: Path) -> None:
    space = _space()
    archs = [space.sample(7)]
    options: dict[str, Any] = {"latency_options": QUICK, "replay": QUICK_REPLAY, "calibration": 1, "passes": 1}
    first = load_or_build(tmp_path, space, archs, threads=1, **options)
    path = tmp_path / TABLE_NAME
    assert path.is_file() and json.loads(path.read_text())["space"] == "shufflenet"
    stamp = path.stat().st_mtime_ns
    again = load_or_build(tmp_path, space, archs, threads=1, **options)
    assert again.to_dict() == first.to_dict() and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    as_min = load_or_build(tmp_path, space, archs, threads=1, statistic="min", **options)
    assert as_min.statistic == "min" and as_min.entries == first.entries  # another view, same measurements
    other_threads = load_or_build(tmp_path, space, archs, threads=2, **options)
    assert other_threads.threads == 2 and json.loads(path.read_text())["threads"] == 2  # rebuilt
    other_space = get_space("shufflenet", {"layout": "small", "head_channels": 128})
    rebuilt = load_or_build(tmp_path, other_space, [other_space.sample(7)], threads=2, **options)
    assert rebuilt.space_config["head_channels"] == 128
    path.write_text("{not json")
    assert load_or_build(tmp_path, space, archs, threads=1, **options).space == "shufflenet"


def test_nasnet_multi_input_blocks_are_measurable() -> None:
    space = _space("nasnet")
    arch = space.sample(0)
    for key, factory, shape in table_blocks(space, arch):
        if key.startswith(("nasnet/add", "nasnet/concat")):
            assert "+" in key  # the other inputs' shapes are part of the table key
            with torch.no_grad():
                assert factory().eval()(torch.randn(1, *shape)).shape[0] == 1
    table = _build(space, [arch], calibration=1)
    assert predict_latency(table, space, arch, measure_missing=False) > 0


def test_isolated_timing_fits_a_scale() -> None:
    space = _space("efficientnet")
    rng = np.random.default_rng(3)
    archs = [space.sample(rng) for _ in range(3)]
    table = _build(space, archs[:1], replay={}, calibration=3, calibration_archs=archs)
    assert table.fit_scale and not table.replay
    assert all("block_sum_ms" not in r for r in table.calibration)
    blocks = table_blocks(space, archs[0])
    expected = table.block_scale * table.block_sum(blocks) + table.overhead_ms
    predicted = predict_latency(table, space, archs[0], measure_missing=False)
    assert predicted == pytest.approx(expected) and predicted > 0


def test_time_in_chains_times_every_block_of_every_chain() -> None:
    space = _space("nasnet")
    chains = [space.latency_blocks(space.sample(seed)) for seed in (0, 1)]
    networks = [space.build(space.sample(0)), None]
    timed = time_in_chains(chains, networks=networks, runs=2, warmup_runs=1)
    signatures = {b.signature for chain in chains for b in chain}
    assert set(timed.blocks) == signatures
    assert timed.networks[1] is None and timed.networks[0] is not None and timed.networks[0].calls == 2
    for signature, timing in timed.blocks.items():
        holders = sum(b.signature == signature for chain in chains for b in chain)
        assert timing.calls == 2 * holders  # two timed runs of every chain, each call once
        assert 0 < timing.min_ms <= timing.p10_ms <= timing.median_ms <= timing.p90_ms
    with pytest.raises(ValueError, match="at least one chain"):
        time_in_chains([])
    with pytest.raises(ValueError, match="one module \\(or None\\) per chain"):
        time_in_chains(chains, networks=networks[:1])
    with pytest.raises(ValueError, match="runs must be an integer >= 1"):
        time_in_chains(chains, runs=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        time_in_chains(chains, dtype="int8")


def test_bad_arguments_are_named() -> None:
    space = _space()
    with pytest.raises(ValueError, match="at least one architecture"):
        build_table(space, [])
    with pytest.raises(ValueError, match="passes must be an integer >= 1"):
        _build(space, [space.sample(0)], passes=0)
