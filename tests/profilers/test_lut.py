"""Latency lookup table: measure once, predict as a sum plus overhead, calibrate, save, load, refuse."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from profilers import LatencyTable, fit_line

torch.set_num_threads(1)

QUICK: dict[str, Any] = {
    "warmup": 1,
    "warmup_time_s": 0.0,
    "repeats": 5,
    "min_time_s": 0.0,
    "noisy_threshold": float("inf"),
}


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


def toy_network() -> tuple[nn.Sequential, tuple[int, ...], list[tuple[str, nn.Module, tuple[int, ...]]]]:
    blocks: list[tuple[str, nn.Module, tuple[int, ...]]] = [
        ("conv_3_8_s1", conv_block(3, 8), (3, 8, 8)),
        ("conv_8_8_s2", conv_block(8, 8, 2), (8, 8, 8)),
        ("conv_8_8_s1", conv_block(8, 8), (8, 4, 4)),
    ]
    return nn.Sequential(*(b for _, b, _ in blocks)), (3, 8, 8), blocks


def test_measure_once_then_lookup() -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    calls = []

    def factory() -> nn.Module:
        calls.append(1)
        return conv_block(3, 4)

    first = table.measure("conv_3_4", factory, (3, 6, 6))
    again = table.measure("conv_3_4", factory, (3, 6, 6))
    assert first == again > 0 and len(calls) == 1
    assert ("conv_3_4", (3, 6, 6)) in table and ("conv_3_4", (3, 7, 7)) not in table
    table.measure("conv_3_4", factory, (3, 7, 7))  # another input shape is another entry
    assert len(table) == 2 and len(calls) == 2


def test_predict_is_block_sum_plus_calibrated_overhead() -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    model, shape, blocks = toy_network()
    overhead = table.calibrate([(model, shape, blocks)])
    record = table.calibration[0]
    block_sum = sum(table.entries[table.entry_key(k, s)].median_ms for k, _, s in blocks)
    assert record["block_keys"] == [table.entry_key(k, s) for k, _, s in blocks]
    assert overhead == pytest.approx(record["measured_ms"]["median"] - block_sum)
    assert table.predict(blocks) == pytest.approx(block_sum + overhead)


def test_calibration_overhead_is_the_mean_residual() -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    model, shape, blocks = toy_network()
    table.calibrate([(model, shape, blocks), (model[:2], shape, blocks[:2])])
    residuals = table.residuals()
    assert len(residuals) == 2
    assert table.overhead_ms == pytest.approx(statistics.fmean(residuals))


def test_other_statistics_share_the_measurements() -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    model, shape, blocks = toy_network()
    table.calibrate([(model, shape, blocks)])
    low = table.with_statistic("min")
    assert low.statistic == "min" and low.entries == table.entries and table.statistic == "median"
    block_min = sum(e.min_ms for e in table.entries.values())
    assert low.overhead_ms == pytest.approx(table.calibration[0]["measured_ms"]["min"] - block_min)
    assert low.predict(blocks) == pytest.approx(block_min + low.overhead_ms)
    assert all(e.min_ms <= e.p10_ms <= e.median_ms <= e.p90_ms for e in table.entries.values())
    with pytest.raises(ValueError, match="statistic must be one of"):
        table.with_statistic("mean")


def test_save_load_round_trip_and_refusals(tmp_path: Path) -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    _, _, blocks = toy_network()
    table.block_sum(blocks)
    table.overhead_ms = 0.01
    path = table.save(tmp_path / "lut.json")
    loaded = LatencyTable.load(path, threads=1)
    assert loaded.entries == table.entries and loaded.overhead_ms == 0.01
    assert loaded.predict(blocks) == pytest.approx(table.predict(blocks))

    with pytest.raises(ValueError, match="threads"):
        LatencyTable.load(path, threads=2)
    with pytest.raises(ValueError, match="batch_size"):
        LatencyTable.load(path, threads=1, batch_size=8)
    data = json.loads(path.read_text())
    data["device_name"] = "some other CPU"
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="device_name"):
        LatencyTable.load(tmp_path / "other.json", threads=1)
    data["format_version"] = 99
    (tmp_path / "future.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format_version"):
        LatencyTable.load(tmp_path / "future.json", threads=1)


def test_bad_arguments() -> None:
    table = LatencyTable(threads=1, latency_options=QUICK)
    with pytest.raises(ValueError, match="block key"):
        table.entry_key("a@b", (3, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        table.entry_key("conv", (3, 0))
    with pytest.raises(ValueError, match=r"nn\.Module"):
        table.measure("conv", lambda: "not a module", (3, 4, 4))  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="at least one"):
        table.predict([])
    with pytest.raises(ValueError, match="latency_options may not set"):
        LatencyTable(latency_options={"threads": 2})
    with pytest.raises(ValueError, match="threads"):
        LatencyTable(threads=0)


def test_fit_line_is_robust() -> None:
    sums = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert fit_line(sums, [s + 0.5 for s in sums], slope=False) == pytest.approx((1.0, 0.5))
    assert fit_line(sums, [1.2 * s + 0.1 for s in sums], slope=True) == pytest.approx((1.2, 0.1))
    disturbed = [1.2 * s + 0.1 for s in sums]
    disturbed[2] *= 3  # one network measured under load
    assert fit_line(sums, disturbed, slope=True) == pytest.approx((1.2, 0.1))
    assert fit_line([2.0, 2.0, 2.0], [3.0, 3.1, 2.9], slope=True) == pytest.approx((1.0, 1.0))  # no spread: no slope
    assert fit_line(sums, [10 * s for s in sums], slope=True)[0] == 2.0  # kept in bounds
    assert fit_line([], [], slope=True) == (1.0, 0.0)
