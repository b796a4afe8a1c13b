"""Search benchmarks on the default run (digits, small shufflenet layout, default supernet training).

- throughput: candidates evaluated per minute with 1 and 2 workers (target: 2 workers >= 1.6x one);
- quality: hypervolume of (validation error, latency) after the same number of trials, NSGA-II against
  random search, 3 seeds each.
Figures go to results/benchmarks/search_throughput.json and search_quality.json. Run with
`pytest -m benchmark tests/benchmarks/test_search_benchmarks.py`. Set NAS_BENCH_RUN to a trained default run
directory to skip supernet training (about 80 s).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest

from nas.core.config import default_config, merge_config, write_config
from nas.core.run_dir import RunDir
from nas.pipeline import prepare_run, train_run
from nas.search.engine import run_search
from nas.search.records import read_trials_csv

pytestmark = pytest.mark.benchmark
RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"


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
    shutil.copytree(default_run, dest, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock", "export", "*.png", "report.*", "ray"))
    run = RunDir(dest)
    cfg = run.load_config()
    if search:
        cfg = merge_config(cfg, {"search": search})
    write_config(cfg, run.config_path)
    return run


def test_candidates_per_minute_1_vs_2_workers(default_run: Path, tmp_path: Path) -> None:
    """Same trials, 1 worker then 2; with 2, also without exclusive timing (workers do not pause for each other)."""
    trials = 40
    figures = {}
    for name, workers, exclusive in (("workers_1", 1, True), ("workers_2", 2, True), ("workers_2_shared_timing", 2, False)):
        run = _fresh(default_run, tmp_path / name, exclusive_timing=exclusive)
        start = time.perf_counter()
        summary = run_search(run, trials=trials, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        assert summary.complete == trials
        records = [r for r in read_trials_csv(run.trials_csv) if r.status == "COMPLETE"]
        figures[name] = {
            "workers": workers,
            "exclusive_timing": exclusive,
            "candidates": trials,
            "seconds": seconds,
            "per_minute": trials / seconds * 60,
            "median_latency_ms": sorted(r.latency_ms for r in records)[len(records) // 2],
        }
    base = figures["workers_1"]["per_minute"]
    result = {
        "benchmark": "search throughput (candidates per minute, start-up of workers included)",
        "trials": trials,
        **figures,
        "ratio_2_over_1": figures["workers_2"]["per_minute"] / base,
        "ratio_2_shared_timing_over_1": figures["workers_2_shared_timing"]["per_minute"] / base,
        "target": 1.6,
        "load_average": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimised) inside the box up to ``reference``."""
    inside = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, best_y = 0.0, reference[1]
    for x, y in inside:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def test_hypervolume_nsga2_vs_random(default_run: Path, tmp_path: Path) -> None:
    trials = 40
    fronts: dict[str, list[list[tuple[float, float]]]] = {"nsga2": [], "random": []}
    for sampler in fronts:
        for seed in (0, 1, 2):
            run = _fresh(default_run, tmp_path / f"{sampler}{seed}", sampler=sampler, seed=seed)
            run_search(run, trials=trials, progress=False)
            records = [r for r in read_trials_csv(run.trials_csv) if r.status == "COMPLETE"]
            fronts[sampler].append([(1.0 - r.accuracy, r.latency_ms) for r in records if math.isfinite(r.latency_ms)])
    worst_latency = max(p[1] for runs in fronts.values() for pts in runs for p in pts)
    reference = (1.0, worst_latency * 1.1)
    volumes = {s: [hypervolume_2d(pts, reference) / (reference[0] * reference[1]) for pts in runs] for s, runs in fronts.items()}
    means = {s: sum(v) / len(v) for s, v in volumes.items()}
    result = {"benchmark": "search quality", "trials": trials, "seeds": [0, 1, 2], "reference_point": reference,
              "hypervolume_normalised": volumes, "mean": means, "nsga2_over_random": means["nsga2"] / means["random"],
              "load_average": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_quality.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def test_hypervolume_of_known_points() -> None:
    assert hypervolume_2d([(0.5, 0.5)], (1.0, 1.0)) == pytest.approx(0.25)
    assert hypervolume_2d([(0.5, 0.5), (0.25, 0.75), (0.6, 0.6)], (1.0, 1.0)) == pytest.approx(0.25 + 0.25 * 0.25)
