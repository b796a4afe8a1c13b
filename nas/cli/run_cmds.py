"""The commands on a run directory: ``nas run``, ``train-supernet``, ``search``, ``report``, ``export``, ``config``.

Each handler checks its inputs and output paths before any work starts (a bad path must not cost a training), then
calls the pipeline. What it prints is a few short lines: where the results are, never a JSON dump.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli.args import budgets_from_args
from nas.core.errors import IncompleteError, UsageError, clip
from nas.core.paths import check_writable_dir, check_writable_file

if TYPE_CHECKING:
    import argparse

    from nas.core.config import RunConfig

__all__ = ["cmd_config", "cmd_export", "cmd_report", "cmd_run", "cmd_search", "cmd_train", "default_run_dir"]

USER_RUNS = Path("runs")  # untracked (.gitignore): where a user's runs go by default
REFERENCE_RUNS = Path("results")  # tracked: only `nas run --reference` writes here


def default_run_dir(cfg: RunConfig, reference: bool) -> Path:
    """``runs/<name>`` for a user's run; ``results/<name>`` for the reference run of the repository."""
    return (REFERENCE_RUNS if reference else USER_RUNS) / cfg.name


def _load_run_config(path: str | None) -> RunConfig:
    """``--config``: a YAML file merged over the default, or the name of a built-in config (``nas config --list``)."""
    from nas.core.builtin_configs import BUILTIN_CONFIGS
    from nas.core.config import load_config, named_config

    try:
        if path is None or (path in BUILTIN_CONFIGS and not Path(path).exists()):
            return named_config(path)
        return load_config(path)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from nas.pipeline import run_all

    cfg = _load_run_config(args.config)
    out = Path(args.out) if args.out else default_run_dir(cfg, args.reference)
    check_writable_dir(out, "run directory (--out)")
    paths = run_all(cfg, out, fresh=args.reference)
    print(f"report: {paths['report']}\nhtml:   {paths['html']}\nonnx:   {paths['onnx']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the supernet; under torchrun, one process of a DistributedDataParallel job (rank 0 reports)."""
    from nas.core.run_dir import RunDir
    from nas.pipeline import prepare_run, train_run
    from supernet.distributed import init_distributed, main_rank_first, shutdown_distributed

    cfg = _load_run_config(args.config)
    check_writable_dir(args.out, "run directory (--out)")
    ctx = init_distributed()
    try:
        with main_rank_first(ctx) as main:
            run = prepare_run(cfg, Path(args.out)) if main else RunDir(Path(args.out))
        final = train_run(run, distributed=ctx)
    finally:
        shutdown_distributed(ctx)
    if ctx is None or ctx.is_main:
        where = f" ({ctx.world_size} processes, {ctx.backend})" if ctx is not None else ""
        print(f"supernet: {run.checkpoint}{where} ({', '.join(f'{k} {v:.4g}' for k, v in final.items())})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir

    run = RunDir(Path(args.run))
    engine = args.engine or run.load_config().search.engine
    check_writable_dir(run.root, "run directory (--run)")
    try:
        if engine == "ray":
            from nas.search.ray.engine import run_ray_search

            summary = run_ray_search(run, trials=args.trials, workers=args.workers, address=args.address)
        else:
            if args.address is not None:
                raise UsageError(
                    "--address goes with --engine ray (an existing Ray cluster's HOST:PORT); engine optuna takes no address"
                )
            from nas.search.engine import run_search

            summary = run_search(run, trials=args.trials, workers=args.workers)
    except json.JSONDecodeError as err:  # only the study's storage holds JSON lines here
        raise UsageError(
            f"{run.journal} is damaged (line {err.lineno} is not a study record); move it away to start the "
            "search over, or restore it from a backup"
        ) from None
    print(
        f"{summary.complete} candidates complete, {summary.failed} failed, {summary.duplicates} duplicate proposals "
        f"skipped, {summary.recovered} interrupted trials retried, {summary.seconds:.1f} s; records: {run.trials_csv}"
    )
    if summary.short:
        raise IncompleteError(
            f"the search ended with {summary.complete} of {summary.target} candidates complete (failed candidates, "
            "or proposals that were all duplicates or over the latency budget); see the messages above"
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.pipeline import report_run

    run = RunDir(Path(args.run))
    run.load_config()
    budgets = budgets_from_args(args)
    check_writable_dir(run.root, "run directory (--run)")
    path = report_run(run, budgets, export=not args.no_export)
    print(f"report: {path}\nhtml:   {path.with_suffix('.html')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.export.winner import export_run

    if args.out is not None and not args.out.endswith(".onnx"):
        raise UsageError(f"--out {clip(args.out)} must name a .onnx file")
    if args.trial is not None and budgets_from_args(args) is not None:
        raise UsageError("budget flags select the best candidate; they do not go with --trial")
    run = RunDir(Path(args.run))
    run.load_config()
    if args.out is not None:
        check_writable_file(args.out, "--out")
    else:
        check_writable_dir(run.export_dir, "export directory")
    summary = export_run(run, trial=args.trial, out=Path(args.out) if args.out else None, budgets=budgets_from_args(args))
    print(_export_line(summary))
    return 0


def _export_line(summary: dict[str, Any]) -> str:
    check = summary.get("check", {})
    verdict = "passed" if check.get("passed") else "FAILED"
    return (
        f"onnx: {summary['onnx']} (trial {summary['trial']}, arch {summary['arch_id']})\n"
        f"check {verdict}: max |ONNX - PyTorch| {check.get('max_abs_diff', float('nan')):.2g} on "
        f"{check.get('batch_size')} validation images, accuracy {check.get('accuracy_onnx')}\n"
        f"bundle: {summary['bundle_json']} (preprocessing, classes, architecture; also in the ONNX metadata)"
    )


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from nas.core.builtin_configs import builtin_config_names
    from nas.core.config import named_config, write_config

    if args.list:
        print("\n".join(["default", *builtin_config_names()]))
        return 0
    try:
        cfg = named_config(args.name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.out:
        check_writable_file(args.out, "--out")
        write_config(cfg, args.out)
        print(f"{args.name or 'default'} config written to {args.out}")
        return 0
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0
