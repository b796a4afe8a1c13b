"""Can the supernet's ranking be trusted on the built-in ``strokes`` task? And what does fine-tuning add?

For each space with a supernet (``supernet.supported_spaces()``): a run of the ``strokes`` named config (the
space's ``small`` layout and the supernet recipe of its ``SPACE-small`` config but its epochs, ``TRAIN_LIMIT`` training images, ``TRIALS`` candidates), then ``nas rank`` with
``ARCHS`` architectures, 2 seeds, ``EPOCHS`` epochs and 2 workers: Kendall tau supernet vs standalone with its
interval, the seed-noise ceiling, tau with and without BN recalibration. Then ``nas finetune`` of the winner from
the supernet's weights (``EPOCHS`` epochs): the gain over the inherited weights on the validation split, and the
test accuracy with its interval. Apart, the wall time of ``nas rank`` (4 architectures, 1 seed, 2 epochs) with 1
and with 2 workers, each on a fresh copy of a small ``strokes`` run (600 training images, 6 candidates). The protocol is scaled to what a shared 2-core machine
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

from nas.core.builtin_configs import BUILTIN_CONFIGS
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


def _space_recipe(space: str) -> dict[str, Any]:
    """The supernet recipe of the space's own named config (``nasnet-small``: lr 0.05, 4 warm-up epochs), but
    its epochs: ``strokes`` sets those for its larger training split."""
    named = BUILTIN_CONFIGS.get(f"{space}-small", {}).get("supernet", {})
    return {k: v for k, v in named.items() if k != "epochs"}


def _run(space: str, root: Path, train_limit: int = TRAIN_LIMIT, trials: int = TRIALS, **supernet: Any) -> RunDir:
    supernet = {**_space_recipe(space), **supernet}
    cfg = merge_config(
        load_config("strokes"),
        {
            "name": f"bench-{space}",
            "space": {"name": space, "layout": "small"},
            "data": {"dataset": "strokes", "train_limit": train_limit},
            "supernet": supernet,
            "search": {"trials": trials, "population_size": 8},
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


def _save(figures: dict[str, Any], name: str = "ranking_trust") -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    protocol = {"train_limit": TRAIN_LIMIT, "trials": TRIALS, "archs": ARCHS, "seeds": SEEDS, "epochs": EPOCHS}
    record = {
        **({"protocol": protocol} if name == "ranking_trust" else {}),
        **figures,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0]},
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


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
    for space, result in figures["spaces"].items():
        assert result["ranking"]["kendall_tau"] is not None, space
        assert result["finetune"]["onnx_check_passed"], space


def test_rank_wall_time_with_one_and_two_workers(tmp_path: Path) -> None:
    run = _run("shufflenet", tmp_path, train_limit=600, trials=6, epochs=2, warmup_epochs=0.5)
    timing: dict[str, Any] = {"archs": 4, "seeds": 1, "epochs": 2, "train_images": 600}
    for workers in (1, 2):
        copy = tmp_path / f"timing-{workers}"
        shutil.copytree(run.root, copy)
        start = time.perf_counter()
        result = rank_run(RunDir(copy), archs=4, seeds=1, epochs=2, workers=workers)
        timing[f"workers_{workers}_s"] = time.perf_counter() - start
        assert result["complete"]
    timing["speedup"] = timing["workers_1_s"] / timing["workers_2_s"]
    _save({"rank_wall_time": timing}, "rank_wall_time")
