"""`nas rank --run DIR [--archs K] [--seeds S] [--epochs E] [--workers N] [--engine E] [--address A]`.

How far to trust the supernet's ranking.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _cmd_rank(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.pipeline import report_run
    from nas.ranking import RANKING_FILE, rank_run

    run = RunDir(Path(args.run))
    result = rank_run(run, archs=args.archs, seeds=args.seeds, epochs=args.epochs, workers=args.workers,
                      engine=args.engine, address=args.address)
    print(f"{len(result['archs'])} of {result['planned_archs']} architectures trained with {result['seeds']} seed(s), "
          f"{result['epochs']} epochs each, in {result['seconds']:.0f} s")
    for key, name in (("kendall_tau", "Kendall tau, supernet vs standalone"),
                      ("kendall_tau_inherited", "the same without BN recalibration"),
                      ("spearman_rho", "Spearman rho"), ("seed_ceiling", "seed-noise ceiling (tau seed vs seed)")):
        value = result.get(key)
        if isinstance(value, dict) and value.get("value") is not None:
            low, high = value.get("low"), value.get("high")
            interval = f" [{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else ""
            print(f"  {name}: {value['value']:+.2f}{interval}")
    if "top_k_overlap" in result:
        print(f"  top-{result['top_k']} overlap: {result['top_k_overlap']:.0%}")
    print(f"verdict: {result['verdict']}: {result['reason']}")
    report = report_run(run)
    print(f"figures: {run.root / RANKING_FILE}\nreport:  {report}")
    return 0


def register(sub: Any, positive_int: Callable[[str], int]) -> None:
    """Add the ``rank`` command to the ``nas`` sub-command parsers."""
    p = sub.add_parser(
        "rank",
        help="train a spread of the run's candidates standalone and compare with the supernet's ranking",
        description="Kendall tau and Spearman rho between the supernet's scores and standalone training, with "
        "bootstrap intervals over architectures, the seed-noise ceiling and the BN-recalibration ablation. "
        "Trainings are trials of the run's storage (study 'ranking'); rerun to resume.",
    )
    p.add_argument("--run", required=True, help="the run directory")
    p.add_argument("--archs", type=positive_int, default=8, help="architectures, spread over the supernet's range (default 8)")
    p.add_argument("--seeds", type=positive_int, default=2, help="standalone trainings per architecture (default 2)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs of each standalone training (default 10)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes or Ray tasks (default 1)")
    p.add_argument("--engine", choices=("optuna", "ray"), default=None,
                   help="where the trainings run: local worker processes (optuna) or Ray tasks; default: the run's "
                   "search.engine")
    p.add_argument("--address", default=None,
                   help="engine ray: the cluster to join (HOST:PORT; default: search.ray_address, else a local one)")
    p.set_defaults(func=_cmd_rank)
