"""Profiler benchmarks: latency repeatability and latency lookup table accuracy (issue 7).

Run with ``pytest -m benchmark tests/benchmarks/test_profiler_benchmarks.py``. Figures go to
``results/benchmarks/profiler_repeatability.json`` and ``results/benchmarks/profiler_lut.json``. The targets (medians
of 5 consecutive profiles within 5%; LUT predictions within +/-10%) are recorded as booleans, not asserted: on a
shared machine they depend on what else runs, which the 1-minute load average in each file shows.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from profilers import STATISTICS, LatencyTable, cpu_name, measure_latency

RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
THREADS = 1


def _write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return path


def _machine() -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.Conv2d(16, 32, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


@pytest.mark.benchmark
def test_latency_repeatability() -> None:
    model = small_cnn()
    options = {"threads": THREADS, "repeats": 100, "min_time_s": 1.0, "warmup_time_s": 0.3}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the noisy flags are recorded below
        results = [measure_latency(model, (3, 32, 32), **options) for _ in range(5)]  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start

    def ratio(values: list[float]) -> float:
        return max(values) / min(values)

    medians = [r.median_ms for r in results]
    payload = {
        "benchmark": "five consecutive latency profiles of one small CNN (3x32x32, batch 1, eager, CPU)",
        "machine": _machine(),
        "load_average_1min_before": round(load_before, 2),
        "options": options,
        "medians_ms": medians,
        "p10_ms": [r.p10_ms for r in results],
        "min_ms": [r.min_ms for r in results],
        "relative_spread": [r.relative_spread for r in results],
        "noisy": [r.noisy for r in results],
        "runs_per_sample": [r.runs_per_sample for r in results],
        "samples": [r.repeats for r in results],
        "max_min_median_ratio": ratio(medians),
        "max_min_p10_ratio": ratio([r.p10_ms for r in results]),
        "max_min_min_ratio": ratio([r.min_ms for r in results]),
        "target": "max/min median ratio <= 1.05",
        "meets_target": ratio(medians) <= 1.05,
        "seconds": elapsed,
    }
    path = _write("profiler_repeatability.json", payload)
    print(f"\nrepeatability: median ratio {ratio(medians):.3f} -> {path}")
    assert all(math.isfinite(m) and m > 0 for m in medians)
    assert all(r.threads == THREADS for r in results)


# --- latency lookup table ---------------------------------------------------------------------------

KERNELS = (1, 3, 5)
WIDTHS = (8, 16, 24, 32)


def conv_block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def random_stack(rng: random.Random, input_shape: tuple[int, int, int]) -> list[tuple[str, Any, tuple[int, ...]]]:
    """A chain of 4-7 conv blocks with random kernels, widths and two or three stride-2 steps."""
    depth = rng.randint(4, 7)
    strides = set(rng.sample(range(depth), rng.randint(2, 3)))
    c, h, w = input_shape
    blocks: list[tuple[str, Any, tuple[int, ...]]] = []
    for i in range(depth):
        kernel, width, stride = rng.choice(KERNELS), rng.choice(WIDTHS), 2 if i in strides else 1
        key = f"conv_k{kernel}_c{c}-{width}_s{stride}"

        def factory(c_in: int = c, c_out: int = width, k: int = kernel, s: int = stride) -> nn.Module:
            return conv_block(c_in, c_out, k, s)

        blocks.append((key, factory, (c, h, w)))
        c, h, w = width, (h + stride - 1) // stride, (w + stride - 1) // stride
    return blocks


def network_of(blocks: list[tuple[str, Any, tuple[int, ...]]]) -> nn.Module:
    return nn.Sequential(*(factory() for _, factory, _ in blocks))


@pytest.mark.benchmark
def test_latency_table_prediction() -> None:
    torch.manual_seed(0)
    rng = random.Random(0)
    input_shape = (3, 32, 32)
    options = {"repeats": 50, "min_time_s": 0.2, "warmup_time_s": 0.1}
    networks = [random_stack(rng, input_shape) for _ in range(20)]
    calibration = [random_stack(rng, input_shape) for _ in range(3)]

    table = LatencyTable(threads=THREADS, latency_options=options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for blocks in networks:
            table.block_sum(blocks)
        table.calibrate([(network_of(blocks), input_shape, blocks) for blocks in calibration])
    build_s = time.perf_counter() - start

    tables = {stat: table.with_statistic(stat) for stat in STATISTICS}
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # noisy flags are recorded per network instead
        for index, blocks in enumerate(networks):
            result = measure_latency(network_of(blocks), input_shape, threads=THREADS, **options)  # type: ignore[arg-type]
            row: dict[str, Any] = {"network": index, "blocks": [key for key, _, _ in blocks], "noisy": result.noisy}
            for stat, stat_table in tables.items():
                predicted, measured = stat_table.predict(blocks), float(getattr(result, f"{stat}_ms"))
                row[stat] = {
                    "predicted_ms": predicted,
                    "measured_ms": measured,
                    "relative_error": predicted / measured - 1,
                }
            rows.append(row)

    summary = {}
    for stat in STATISTICS:
        errors = [abs(r[stat]["relative_error"]) for r in rows]
        summary[stat] = {
            "overhead_ms": tables[stat].overhead_ms,
            "share_within_10pct": sum(e <= 0.10 for e in errors) / len(errors),
            "mean_abs_relative_error": statistics.fmean(errors),
            "max_abs_relative_error": max(errors),
        }
    payload = {
        "benchmark": "latency table on 20 random stacks of conv-bn-relu blocks (3x32x32, batch 1, eager, CPU)",
        "machine": _machine(),
        "options": options,
        "threads": THREADS,
        "entries": len(table),
        "build_seconds": build_s,
        "headline_statistic": "median",
        "share_within_10pct": summary["median"]["share_within_10pct"],
        "by_statistic": summary,
        "calibration": table.calibration,
        "networks": rows,
    }
    path = _write("profiler_lut.json", payload)
    print(
        "\nLUT: "
        + ", ".join(f"{stat} {v['share_within_10pct']:.0%} within 10%" for stat, v in summary.items())
        + f"; build {build_s:.1f}s, {len(table)} entries -> {path}"
    )
    assert len(rows) == 20 and all(math.isfinite(r["median"]["predicted_ms"]) for r in rows)
