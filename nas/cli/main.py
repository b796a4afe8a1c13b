"""The `nas` command: argument parsing and dispatch. Each command's work lives in its own module.

Exit codes: 0 success; 2 bad input (one line on stderr naming what is wrong and what is allowed); 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nas.core.errors import UsageError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _cmd_spaces(args: argparse.Namespace) -> int:
    from nas.cli.spaces_cmd import show_spaces

    return show_spaces(args.space, as_json=args.json)


def _cmd_profile(args: argparse.Namespace) -> int:
    from nas.cli.profile_cmd import ProfileRequest, run_profile

    request = ProfileRequest(
        space=args.space,
        preset=args.preset,
        arch=args.arch,
        layout=args.layout,
        model=args.model,
        input_size=args.input_size,
        in_channels=args.in_channels,
        batch_size=args.batch,
        device=args.device,
        backend=args.backend,
        threads=args.threads,
        repeats=args.repeats,
        latency_table=args.latency_table,
        as_json=args.json,
    )
    return run_profile(request)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a non-negative number")
    return value


def _budget_arg(text: str) -> float | str:
    """A budget on the command line: a non-negative number, or a relative one ('60%', '125% of fastest')."""
    if "%" in text:
        from nas.core.budgets import parse_budget

        try:
            parse_budget("latency_ms", text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).replace("budget latency_ms: ", "")) from None
        return text
    return _non_negative_float(text)


def _load_run_config(path: str | None) -> Any:
    from nas.core.config import default_config, load_config

    try:
        return default_config() if path is None else load_config(path)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from nas.pipeline import run_all

    cfg = _load_run_config(args.config)
    out = Path(args.out) if args.out else Path("results") / cfg.name
    paths = run_all(cfg, out)
    print(f"report: {paths['report']}\nhtml:   {paths['html']}\nonnx:   {paths['onnx']}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from nas.pipeline import prepare_run, train_run

    cfg = _load_run_config(args.config)
    run = prepare_run(cfg, Path(args.out))
    final = train_run(run)
    print(f"supernet: {run.checkpoint} ({', '.join(f'{k} {v:.4g}' for k, v in final.items())})")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir

    run = RunDir(Path(args.run))
    engine = args.engine or run.load_config().search.engine
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
    print(
        f"{summary.complete} candidates complete, {summary.failed} failed, {summary.duplicates} duplicate proposals "
        f"skipped, {summary.recovered} interrupted trials retried, {summary.seconds:.1f} s; records: {run.trials_csv}"
    )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.pipeline import report_run
    from nas.report.report import parse_budgets

    given = {
        "max_latency_ms": args.max_latency_ms,
        "max_energy_mj": args.max_energy_mj,
        "max_memory_access_mb": args.max_memory_access_mb,
    }
    budgets = None
    if any(v is not None for v in given.values()):
        try:
            budgets = parse_budgets(**given)
        except ValueError as err:
            raise UsageError(str(err)) from None
    path = report_run(RunDir(Path(args.run)), budgets)
    print(f"report: {path}\nhtml:   {path.with_suffix('.html')}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from nas.core.run_dir import RunDir
    from nas.export.winner import export_run

    if args.out is not None and not args.out.endswith(".onnx"):
        raise UsageError(f"--out {args.out!r} must name a .onnx file")
    summary = export_run(RunDir(Path(args.run)), trial=args.trial, out=Path(args.out) if args.out else None)
    check = summary["check"]
    print(f"onnx: {summary['onnx']} (trial {summary['trial']}, arch {summary['arch_id']})")
    print(f"check: {json.dumps(check, default=str)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Hardware-aware neural architecture search.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("spaces", help="list the search spaces, their choices and presets")
    p.add_argument("space", nargs="?", help="show one space in full")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_spaces)

    p = sub.add_parser(
        "profile",
        help="profile a preset, an architecture or any model on a device",
        description="Profile (--space SPACE (--preset NAME | --arch JSON) | --model MODULE:CALLABLE).",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="a search space (see 'nas spaces')")
    what.add_argument("--model", help="MODULE:CALLABLE returning an nn.Module, e.g. mypkg.models:make_model")
    arch = p.add_mutually_exclusive_group()
    arch.add_argument("--preset", help="a preset of the space")
    arch.add_argument("--arch", help="an architecture: JSON text or a path to a JSON file")
    p.add_argument("--layout", help="the space layout an --arch belongs to (default: the space's default)")
    p.add_argument("--input-size", type=_positive_int, help="input side in pixels (default: the model's own)")
    p.add_argument("--in-channels", type=_positive_int, default=None, help="input channels for --model (default 3)")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--backend", choices=("eager", "onnxruntime"), default="eager", help="latency backend")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--repeats", type=_positive_int, default=None, help="timed runs (default: adaptive)")
    p.add_argument(
        "--latency-table",
        metavar="DIR",
        help="predict the latency from the space's per-block latency table in DIR (measured there on first use)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("run", help="the whole pipeline: train the supernet, search, report, export")
    p.add_argument("--config", help="a YAML run config (default: the built-in one: digits, small shufflenet)")
    p.add_argument("--out", help="the run directory (default: results/<config name>)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("train-supernet", help="train (or resume training) a run's supernet")
    p.add_argument("--config", required=True, help="a YAML run config")
    p.add_argument("--out", required=True, help="the run directory")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("search", help="search a trained run's supernet (resumes an interrupted search)")
    p.add_argument("--run", required=True, help="the run directory")
    p.add_argument("--engine", choices=("optuna", "ray"), default=None, help="default: the config's search.engine")
    p.add_argument("--workers", type=_positive_int, help="worker processes (default: the config's)")
    p.add_argument("--trials", type=_positive_int, help="distinct candidates to finish (default: the config's)")
    p.add_argument("--address", help="an existing Ray cluster's address (engine ray)")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("report", help="write report.md/.html with Pareto plots and the best candidate per budget")
    p.add_argument("--run", required=True, help="the run directory")
    relative = "; or relative: '60%%' of the most accurate candidate's, '125%% of fastest'"
    p.add_argument("--max-latency-ms", type=_budget_arg, help="latency budget in ms" + relative)
    p.add_argument("--max-energy-mj", type=_budget_arg, help="energy budget in mJ" + relative)
    p.add_argument("--max-memory-access-mb", type=_budget_arg, help="memory access budget in MB" + relative)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="export a candidate to ONNX, checked in ONNX Runtime")
    p.add_argument("--run", required=True, help="the run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="the trial number to export")
    which.add_argument("--best", action="store_true", help="the best candidate under the report budgets (default)")
    p.add_argument("--out", help="the .onnx file (default: DIR/export/trial<N>.onnx)")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if args.command in ("run", "search"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are shown by our progress bar
    try:
        return func(args)
    except UsageError as err:
        print(f"nas {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
