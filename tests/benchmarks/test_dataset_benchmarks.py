"""Is the built-in ``strokes`` task hard enough to rank architectures? (issue #14's data-set targets)

8 random architectures of the small ShuffleNet layout (drawn with ``numpy.random.default_rng(0)``) are trained
standalone from scratch with 2 seeds (the standalone recipe of ``nas rank``: ``nas.finetune.Recipe``,
``NAS_BENCH_EPOCHS`` epochs (default 12), one torch thread per process) on the split of the named config
``strokes`` (3,500 training images) and scored on its validation split (4,000 images). Targets: the mean
accuracies of the 8 span at least 3 points, and Kendall tau between the two seeds is at least 0.6. For
comparison the same is measured on digits (16x16) when ``NAS_BENCH_DIGITS=1``.

Run with ``pytest -m benchmark tests/benchmarks/test_dataset_benchmarks.py``; figures go to
``results/benchmarks/dataset_ranking.json`` (each finished training is added to
``dataset_ranking.partial.json`` as it ends). One training runs per core (``NAS_BENCH_PROCESSES`` to change).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3 * 3600)]  # minutes of training on a busy machine

RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
ARCHS, SEEDS, TRAIN_LIMIT = 8, 2, None
# Training length and parallelism can be set for an experiment; the figures record what was used.
EPOCHS = int(os.environ.get("NAS_BENCH_EPOCHS", "12"))
PROCESSES = int(os.environ.get("NAS_BENCH_PROCESSES", str(os.cpu_count() or 1)))


def _train(job: tuple[str, dict[str, Any], int]) -> tuple[float, float]:
    """One standalone training (in a worker process): its validation and training accuracy."""
    torch.set_num_threads(1)
    from nas.core.config import load_config, merge_config
    from nas.core.data import load_dataset
    from nas.finetune import Recipe, train_standalone
    from search_spaces import get_space
    from supernet import top1_accuracy

    dataset, values, seed = job
    if dataset == "strokes":  # the named config's split: 3,500 training and 4,000 validation images
        cfg = merge_config(load_config("strokes"), {"data": {"dataset": "strokes", "train_limit": TRAIN_LIMIT}})
        data = cfg.data.load()
    else:
        data = load_dataset(dataset, train_limit=TRAIN_LIMIT, input_size=16)
    space = get_space("shufflenet", {"layout": "small", **data.space_overrides()})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1000 + seed)
        model = space.build(values)
    train_standalone(model, data.train, Recipe(epochs=EPOCHS, seed=seed))
    return top1_accuracy(model, data.val), top1_accuracy(model, data.train)


def _indexed(job: tuple[int, tuple[str, dict[str, Any], int]]) -> tuple[int, tuple[float, float]]:
    return job[0], _train(job[1])


def _measure(dataset: str) -> dict[str, Any]:
    from search_spaces import get_space

    space = get_space("shufflenet", {"layout": "small", "in_channels": 1, "num_classes": 10, "input_size": 16})
    rng = np.random.default_rng(0)
    archs = [dict(space.sample(rng).values) for _ in range(ARCHS)]
    jobs = [(dataset, a, s) for s in range(SEEDS) for a in archs]
    start = time.perf_counter()
    flat, train = [math.nan] * len(jobs), [math.nan] * len(jobs)
    with mp.get_context("spawn").Pool(PROCESSES) as pool:
        for index, (accuracy, train_accuracy) in pool.imap_unordered(_indexed, list(enumerate(jobs))):
            flat[index], train[index] = accuracy, train_accuracy
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "dataset_ranking.partial.json").write_text(json.dumps({"dataset": dataset, "archs": archs, "accuracy": flat}))
    acc = np.array(flat).reshape(SEEDS, ARCHS).T  # archs x seeds
    mean = acc.mean(axis=1)
    return {
        "archs": archs,
        "accuracy_per_seed": acc.tolist(),
        "train_accuracy_per_seed": np.array(train).reshape(SEEDS, ARCHS).T.tolist(),
        "spread_points": float(100 * (mean.max() - mean.min())),
        "spread_points_per_seed": [float(100 * (acc[:, s].max() - acc[:, s].min())) for s in range(SEEDS)],
        "seed_tau": float(kendalltau(acc[:, 0], acc[:, 1]).statistic),
        "seconds": time.perf_counter() - start,
    }


def test_strokes_separates_random_architectures_beyond_seed_noise() -> None:
    figures = {"strokes": _measure("strokes")}
    if os.environ.get("NAS_BENCH_DIGITS") == "1":
        figures["digits"] = _measure("digits")
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "protocol": {"archs": ARCHS, "seeds": SEEDS, "epochs": EPOCHS, "train_limit": TRAIN_LIMIT, "recipe": "nas.finetune.Recipe defaults", "processes": PROCESSES},
        **figures,
        "targets": {"spread_points": 3.0, "seed_tau": 0.6},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
    }
    (RESULTS / "dataset_ranking.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "dataset_ranking.partial.json").unlink(missing_ok=True)
    strokes = figures["strokes"]
    assert strokes["spread_points"] >= 3.0, strokes
    assert strokes["seed_tau"] >= 0.6, strokes
