"""`nas finetune --run DIR [--trial N | --best] [--epochs E] [--init supernet|scratch] ...`: DetNAS's last step."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.cli.args import fraction, positive_float

__all__ = ["register"]


def _cmd_finetune(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.finetune.run import FinetuneRequest, finetune_run
    from nas.pipeline import report_run

    request = FinetuneRequest(
        trial=args.trial, epochs=args.epochs, init=args.init, lr=args.lr, mixup_alpha=args.mixup or 0.0,
        distill_weight=args.distill or 0.0, temperature=args.temperature, teacher=args.teacher, seed=args.seed,
    )
    run = RunDir(Path(args.run))
    summary = finetune_run(run, request)
    val, test = summary["val_accuracy_finetuned"], summary["test_accuracy"]
    print(f"trial {summary['trial']} (arch {summary['arch_id']}), {summary['init']} init, {args.epochs} epochs, "
          f"{summary['seconds']:.0f} s")
    print(f"  validation accuracy: search {summary['val_accuracy_search']:.4f}, inherited weights "
          f"{summary['val_accuracy_inherited']:.4f}, fine-tuned {val['accuracy']:.4f}")
    print(f"  test accuracy: {test['accuracy']:.4f} (95% Wilson interval {test['low']:.4f}-{test['high']:.4f}, "
          f"n={test['n']})")
    check = summary["check"]
    print(f"onnx: {summary['onnx']} (ONNX Runtime check {'passed' if check.get('passed') else 'FAILED'})")
    print(f"report: {report_run(run)}")
    return 0


def register(sub: Any, positive_int: Callable[[str], int]) -> None:
    """Add the ``finetune`` command to the ``nas`` sub-command parsers."""
    p = sub.add_parser(
        "finetune",
        help="train the winner on its own (from the supernet or scratch), test-split accuracy, ONNX export",
        description="Cosine learning rate with warm-up and label smoothing; mixup and knowledge distillation "
        "as options. Resumable: rerun the same command. The test split is used for the final figure only.",
    )
    p.add_argument("--run", required=True, help="the run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="the trial number to fine-tune")
    which.add_argument("--best", action="store_true", help="the best candidate under the report budgets (default)")
    p.add_argument("--epochs", type=positive_int, default=20, help="training epochs (default 20)")
    p.add_argument("--init", choices=("supernet", "scratch"), default="supernet",
                   help="start from the supernet's weights (default) or from scratch")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 0.02 supernet, 0.1 scratch)")
    p.add_argument("--mixup", type=positive_float, default=None, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA)")
    p.add_argument("--distill", type=fraction, default=None, metavar="W",
                   help="knowledge distillation: weight W of the teacher's soft targets (0..1)")
    p.add_argument("--teacher", default="largest", help="'largest' (the run's largest candidate) or MODULE:CALLABLE")
    p.add_argument("--temperature", type=positive_float, default=4.0, help="distillation temperature (default 4)")
    p.add_argument("--seed", type=int, default=0, help="data order and, from scratch, initial weights (default 0)")
    p.set_defaults(func=_cmd_finetune)
