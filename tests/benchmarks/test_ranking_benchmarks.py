"""Can the supernet's ranking be trusted on the built-in ``strokes`` task? And what does fine-tuning add?

For each space with a supernet (``supernet.supported_spaces()``): a run of the ``strokes`` named config (the
space's ``small`` layout, ``TRAIN_LIMIT`` training images, ``TRIALS`` candidates), then ``nas rank`` with
``ARCHS`` architectures, 2 seeds, ``EPOCHS`` epochs and 2 workers: Kendall tau supernet vs standalone with its
interval, the seed-noise ceiling, tau with and without BN recalibration. Then ``nas finetune`` of the winner from
the supernet's weights (``EPOCHS`` epochs): the gain over the inherited weights on the validation split, and the
test accuracy with its interval. Finally the wall time of ``nas rank`` (3 architectures, 1 seed, 1 epoch) with 1
and with 2 workers, each on a fresh copy of the run. The protocol is scaled to what a shared 2-core machine
allows; timing there is noisy: the load average is recorded with the figures. Figures are written after every
stage, and the runs live in ``NAS_BENCH_DIR`` (default: a temporary directory), so a rerun resumes them.

Run with ``pytest -m benchmark tests/benchmarks/test_ranking_benchmarks.py``; figures go to
``results/benchmarks/ranking_trust.json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.core.config import load_config, merge_config
from nas.core.run_dir import RunDir
from nas.finetune.run import FinetuneRequest, finetune_run
from nas.pipeline import prepare_run, train_run
from nas.ranking import rank_run
from nas.search.engine import run_search
from supernet import supported_spaces

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3 * 3600)]  # minutes of training on a busy machine

RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
TRAIN_LIMIT, TRIALS, ARCHS, SEEDS, EPOCHS = 1500, 16, 6, 2, 4


def _run(space: str, root: Path) -> RunDir:
    cfg = merge_config(
        load_config("strokes"),
        {
            "name": f"bench-{space}",
            "space": {"name": space, "layout": "small"},
            "data": {"dataset": "strokes", "train_limit": TRAIN_LIMIT},
            "search": {"trials": TRIALS, "population_size": 8},
            "ranking": {"quick_check": False},
        },
    )
    run = prepare_run(cfg, root / space)
    train_run(run, progress=False)
    run_search(run, progress=False)
    return run


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("kendall_tau", "spearman_rho", "kendall_tau_inherited", "spearman_rho_inherited", "seed_ceiling",
            "top_k", "top_k_overlap", "winner_standalone_rank", "standalone_spread", "verdict", "reason", "seconds")
    return {k: result.get(k) for k in keys}


def _save(figures: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "protocol": {"train_limit": TRAIN_LIMIT, "trials": TRIALS, "archs": ARCHS, "seeds": SEEDS, "epochs": EPOCHS},
        **figures,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
    }
    (RESULTS / "ranking_trust.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def test_ranking_trust_fine_tuning_gain_and_rank_wall_time(tmp_path: Path) -> None:
    root = Path(os.environ.get("NAS_BENCH_DIR", tmp_path))
    figures: dict[str, Any] = {"spaces": {}}
    for space in supported_spaces():
        run = _run(space, root)
        ranking = rank_run(run, archs=ARCHS, seeds=SEEDS, epochs=EPOCHS, workers=2)
        figures["spaces"][space] = {"ranking": _figures(ranking)}
        _save(figures)
        tuned = finetune_run(run, FinetuneRequest(epochs=EPOCHS, init="supernet"))
        figures["spaces"][space]["finetune"] = {
            "trial": tuned["trial"],
            "val_accuracy_inherited": tuned["val_accuracy_inherited"],
            "val_accuracy_finetuned": tuned["val_accuracy_finetuned"]["accuracy"],
            "gain_points": 100 * (tuned["val_accuracy_finetuned"]["accuracy"] - tuned["val_accuracy_inherited"]),
            "test_accuracy": tuned["test_accuracy"],
            "onnx_check_passed": tuned["check"]["passed"],
            "seconds": tuned["seconds"],
        }
        _save(figures)
        if space == "shufflenet":
            timing = {}
            for workers in (1, 2):
                copy = root / f"timing-{workers}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("ranking*", ".ranking*"))
                start = time.perf_counter()
                rank_run(RunDir(copy), archs=3, seeds=1, epochs=1, workers=workers)
                timing[f"workers_{workers}_s"] = time.perf_counter() - start
            figures["rank_wall_time"] = {"archs": 3, "seeds": 1, "epochs": 1, **timing}
            _save(figures)
    for space, result in figures["spaces"].items():
        assert result["ranking"]["kendall_tau"] is not None, space
        assert result["finetune"]["onnx_check_passed"], space
