"""Benchmarks of issue 13 ("measure what ships and say how sure"); figures to results/benchmarks/*.json.

- ``timing_repeatability.json``: five ``nas profile`` runs in a row (separate processes, as a user runs them) of
  the same preset, per backend; target: medians within 3 % of each other (max / min - 1).
- ``evaluation_cost.json``: the search's evaluation of the same candidates with the latency measured on PyTorch
  eager and on ONNX Runtime (export for timing included), interleaved; target: ONNX Runtime <= 1.5x eager.
- ``worker_scaling.json``: candidates per minute with 1 and 2 workers, exclusive timing on, ONNX Runtime latency;
  target: 2 workers >= 1.7x one.
- ``winner_accuracy.json``: the default run's winner, its accuracy interval and its paired tests against the
  runners-up (set ``NAS_BENCH_RUN`` to a finished default run, e.g. ``results/default``).

Run with ``pytest -m benchmark tests/benchmarks/test_measure_benchmarks.py -s``. ``NAS_BENCH_RUN`` (a trained
default run) skips supernet training. Every figure is recorded with the machine's load average: this machine is
shared, and load from other work moves timings by far more than the targets.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nas.core.config import default_config, merge_config, write_config
from nas.core.run_dir import RunDir
from nas.pipeline import prepare_run, train_run

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(0)]
ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "benchmarks"
PRESET = os.environ.get("NAS_BENCH_PRESET", "shufflenetv2-0.5x")
COST_CANDIDATES = int(os.environ.get("NAS_BENCH_COST_CANDIDATES", "12"))
SCALING_TRIALS = int(os.environ.get("NAS_BENCH_SCALING_TRIALS", "24"))


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    print(json.dumps({k: v for k, v in payload.items() if not isinstance(v, (list, dict))}, indent=1))
    return path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("NAS_BENCH_RUN")
    if given:
        return Path(given)
    root = tmp_path_factory.mktemp("bench") / "run"
    run = prepare_run(default_config(), root)
    train_run(run, progress=False)
    return run.root


def _fresh(default_run: Path, dest: Path, **search: object) -> RunDir:
    ignore = shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock", "export", "*.png", "report.*", "ray", "latency_table.json")
    shutil.copytree(default_run, dest, ignore=ignore)
    run = RunDir(dest)
    cfg = run.load_config()
    if search:
        cfg = merge_config(cfg, {"search": search})
    write_config(cfg, run.config_path)
    return run


def test_timing_repeatability_of_nas_profile() -> None:
    """Five `nas profile --json` processes in a row per backend; the spread of their medians."""
    cases = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for backend in ("eager", "onnxruntime"):
        runs = []
        for _ in range(5):
            out = subprocess.run(
                [sys.executable, "-m", "nas", "profile", "--space", "shufflenet", "--preset", PRESET,
                 "--backend", backend, "--threads", "1", "--json"],
                capture_output=True, text=True, check=True, env=env, cwd=ROOT,
            )  # fmt: skip
            latency = json.loads(out.stdout)["latency_ms"]
            runs.append(latency)
        medians = [r["median"] for r in runs]
        cases[backend] = {
            "medians_ms": medians,
            "ci_half_width_relative": [r["protocol"]["ci_half_width_relative"] for r in runs],
            "converged": [r["protocol"]["converged"] for r in runs],
            "samples": [r["repeats"] for r in runs],
            "p10_ms": [r["p10"] for r in runs],
            "spread_max_over_min_minus_1": max(medians) / min(medians) - 1,
            "p10_spread_max_over_min_minus_1": max(r["p10"] for r in runs) / min(r["p10"] for r in runs) - 1,
            "meets_target": max(medians) / min(medians) - 1 <= 0.03,
            "load_average_after": _load(),
        }
    _write(
        "timing_repeatability.json",
        {
            "benchmark": f"five `nas profile --space shufflenet --preset {PRESET}` processes in a row, per backend",
            "protocol": runs[-1]["protocol"],
            "target": "medians within 3 % (max / min - 1 <= 0.03)",
            "cases": cases,
        },
    )


def test_evaluation_cost_per_backend(default_run: Path) -> None:
    """The search's Evaluator on the same candidates, latency on eager then ONNX Runtime, interleaved."""
    import torch

    from nas.search.candidate import Evaluator
    from supernet import load_supernet

    torch.set_num_threads(1)
    run = RunDir(default_run)
    cfg = run.load_config()
    data = cfg.data.load()
    supernet = load_supernet(run.require_supernet()).eval()
    rng = np.random.default_rng(7)
    archs = [supernet.space.sample(rng) for _ in range(COST_CANDIDATES)]
    evaluators = {
        backend: Evaluator(supernet, data, cfg.supernet, cfg.search.model_copy(update={"latency_backend": backend}))
        for backend in ("eager", "onnxruntime")
    }
    evaluators["eager"].evaluate(archs[0])  # warm both paths up (imports, first export)
    evaluators["onnxruntime"].evaluate(archs[0])
    seconds: dict[str, list[float]] = {"eager": [], "onnxruntime": []}
    parts: dict[str, list[dict[str, float]]] = {"eager": [], "onnxruntime": []}
    latencies: dict[str, list[float]] = {"eager": [], "onnxruntime": []}
    for i, arch in enumerate(archs):
        order = ("eager", "onnxruntime") if i % 2 == 0 else ("onnxruntime", "eager")
        for backend in order:
            start = time.perf_counter()
            metrics = evaluators[backend].evaluate(arch)
            seconds[backend].append(time.perf_counter() - start)
            parts[backend].append({k: v for k, v in metrics.items() if k.startswith("seconds_")})
            latencies[backend].append(metrics["latency_ms"])
    mean = {b: statistics.fmean(v) for b, v in seconds.items()}
    ratio = mean["onnxruntime"] / mean["eager"]
    _write(
        "evaluation_cost.json",
        {
            "benchmark": f"Evaluator.evaluate on {len(archs)} candidates of the default run, per latency backend",
            "mean_seconds": mean,
            "median_seconds": {b: statistics.median(v) for b, v in seconds.items()},
            "mean_parts_seconds": {
                b: {k: statistics.fmean(p[k] for p in ps) for k in ps[0]} for b, ps in parts.items()
            },
            "ratio_onnxruntime_over_eager": ratio,
            "target": "<= 1.5",
            "meets_target": ratio <= 1.5,
            "median_latency_ms": {b: statistics.median(v) for b, v in latencies.items()},
            "exporter": cfg.search.latency_exporter,
            "load_average": _load(),
        },
    )


def test_worker_scaling_with_exclusive_timing(default_run: Path, tmp_path: Path) -> None:
    from nas.search.engine import run_search

    figures = {}
    for name, workers in (("workers_1", 1), ("workers_2", 2)):
        run = _fresh(default_run, tmp_path / name, exclusive_timing=True, latency_backend="onnxruntime")
        start = time.perf_counter()
        summary = run_search(run, trials=SCALING_TRIALS, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        assert summary.complete == SCALING_TRIALS
        figures[name] = {"seconds": seconds, "per_minute": SCALING_TRIALS / seconds * 60, "load_average": _load()}
    ratio = figures["workers_2"]["per_minute"] / figures["workers_1"]["per_minute"]
    _write(
        "worker_scaling.json",
        {
            "benchmark": f"search throughput, {SCALING_TRIALS} candidates, exclusive_timing on, ONNX Runtime latency",
            **figures,
            "ratio_2_over_1": ratio,
            "target": ">= 1.7",
            "meets_target": ratio >= 1.7,
        },
    )


def test_winner_accuracy_interval(default_run: Path) -> None:
    """The winner of the run (report budgets) with its 95 % interval and paired tests against the runners-up."""
    from nas.core.stats import images_needed
    from nas.report.selection import check_budgets, competing, select_best
    from nas.report.uncertainty import _compare, _runners_up, accuracy_interval
    from nas.search.records import read_trials_csv

    run = RunDir(default_run)
    cfg = run.load_config()
    pool = competing(read_trials_csv(run.trials_csv))
    budgets = check_budgets(dict(cfg.report.budgets), pool)
    winner = select_best(pool, budgets)
    assert winner is not None, "the default run ended without a winner"
    low, high = accuracy_interval(winner) or (float("nan"), float("nan"))
    comparisons = [
        {
            "trial": other.trial,
            "accuracy": other.accuracy,
            "only_winner_right": test.only_first,
            "only_other_right": test.only_second,
            "p_value": test.p_value,
            "distinguishable": test.significant(0.05),
            "images_needed": images_needed(test),
        }
        for other, test in _compare(winner, _runners_up(pool, winner, budgets))
    ]
    _write(
        "winner_accuracy.json",
        {
            "benchmark": "the default run's winner: validation accuracy with its 95 % Wilson interval, paired tests",
            "run": str(default_run),
            "budgets": {k: {"bound": float(v), "describe": v.describe()} for k, v in budgets.items()},
            "winner": {"trial": winner.trial, "accuracy": winner.accuracy, "val_images": winner.val_images,
                       "interval_95": [low, high], "latency_ms": winner.latency_ms, "backend": winner.latency_backend},
            "runners_up": comparisons,
            "candidates": len(pool),
        },
    )  # fmt: skip
