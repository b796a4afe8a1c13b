"""The `nas` command: one small function registers each subcommand; each command's work lives in its own module.

To add a command: write ``_add_NAME(sub)`` that adds its parser (every flag with a help text) and sets ``func``,
and append it to ``_COMMANDS``.

Exit codes: 0 success; 2 bad input (one short line on stderr naming what is wrong and what is allowed; never a
traceback); 1 anything else; 130 interrupted (with how to resume).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

import nas
from nas.cli import finetune_cmd, rank_cmd, run_cmds
from nas.cli.args import Parser, add_budget_flags, positive_int
from nas.core.errors import IncompleteError, UsageError

__all__ = ["build_parser", "main"]

_MAX_MESSAGE = 400  # characters of an error line (messages clip the user's input themselves; this is the backstop)


def _cmd_spaces(args: argparse.Namespace) -> int:
    from nas.cli.spaces_cmd import show_spaces

    return show_spaces(args.space, layout=args.layout, as_json=args.json)


def _cmd_profile(args: argparse.Namespace) -> int:
    from nas.cli.profile_cmd import ProfileRequest, run_profile

    fields = ("space", "preset", "arch", "layout", "model", "input_size", "in_channels", "device", "backend",
              "threads", "repeats", "latency_table")
    request = ProfileRequest(**{k: getattr(args, k) for k in fields}, batch_size=args.batch, as_json=args.json)
    return run_profile(request)


def _add_spaces(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the search spaces, their choices and presets")
    p.add_argument("space", nargs="?", help="show one space in full")
    p.add_argument("--layout", help="with SPACE: show the choices of this layout (default: the space's default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_spaces)


def _add_profile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="profile a preset, an architecture or any model on a device",
        description="Profile (--space SPACE (--preset NAME | --arch JSON) | --arch FILE | --model MODULE:CALLABLE). "
        "An architecture file written by 'nas export' names its space and layout itself.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--space", help="a search space (see 'nas spaces')")
    what.add_argument("--model", help="MODULE:CALLABLE returning an nn.Module, e.g. mypkg.models:make_model")
    arch = p.add_mutually_exclusive_group()
    arch.add_argument("--preset", help="a preset of the space")
    arch.add_argument("--arch", help="an architecture: JSON text or a .json file (an exported .arch.json needs no --space)")
    p.add_argument("--layout", help="the space layout an --arch belongs to (default: the file's, else the space's)")
    p.add_argument("--input-size", type=positive_int, help="input side in pixels (default: the model's own; 224 for --model)")
    p.add_argument("--in-channels", type=positive_int, default=None, help="input channels for --model (default 3)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to measure (default cpu)")
    p.add_argument("--backend", choices=("eager", "onnxruntime"), default="eager", help="latency backend (default eager)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed runs (default: adaptive)")
    p.add_argument(
        "--latency-table",
        metavar="DIR",
        help="predict the latency from the space's per-block latency table in DIR (measured there on first use)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_profile)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole pipeline: train the supernet, search, export the winner, report")
    p.add_argument("--config", help="a YAML run config (default: the built-in one, see 'nas config')")
    p.add_argument("--out", help="the run directory (default: runs/<config name>; untracked)")
    p.add_argument(
        "--reference",
        action="store_true",
        help="regenerate the repository's reference run from scratch in results/<config name> (the only "
        "command that writes there)",
    )
    p.set_defaults(func=run_cmds.cmd_run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-supernet", help="train (or resume training) a run's supernet")
    p.add_argument("--config", help="a YAML run config (default: the built-in one, see 'nas config')")
    p.add_argument("--out", required=True, help="the run directory")
    p.set_defaults(func=run_cmds.cmd_train)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a trained run's supernet (resumes an interrupted search)")
    p.add_argument("--run", required=True, help="the run directory")
    p.add_argument("--engine", choices=("optuna", "ray"), default=None, help="default: the config's search.engine")
    p.add_argument("--workers", type=positive_int, help="worker processes (default: the config's)")
    p.add_argument("--trials", type=positive_int, help="distinct candidates to finish (default: the config's)")
    p.add_argument("--address", help="an existing Ray cluster's address HOST:PORT (engine ray)")
    p.set_defaults(func=run_cmds.cmd_search)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md/.html: the winner under the budgets, its audit, Pareto plots")
    p.add_argument("--run", required=True, help="the run directory")
    add_budget_flags(p)
    p.add_argument(
        "--no-export",
        action="store_true",
        help="do not export the winner when it has no export yet (its profile, audit and ONNX file are then left out)",
    )
    p.set_defaults(func=run_cmds.cmd_report)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a candidate to ONNX with its preprocessing, checked in ONNX Runtime")
    p.add_argument("--run", required=True, help="the run directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="the trial number to export")
    which.add_argument(
        "--best", action="store_true", help="the best candidate under the budgets, as 'nas report' picks it (default)"
    )
    add_budget_flags(p)
    p.add_argument("--out", help="the .onnx file (default: RUN/export/trial<N>.onnx)")
    p.set_defaults(func=run_cmds.cmd_export)


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the default run config (or a built-in one) as YAML, a starting point for --config")
    p.add_argument("name", nargs="?", default=None, help="a built-in config (see --list); default: the default config")
    p.add_argument("--list", action="store_true", help="list the built-in configs (each usable as --config NAME)")
    p.add_argument("--out", help="write it to this file instead of printing it")
    p.set_defaults(func=run_cmds.cmd_config)


def _add_rank(sub: argparse._SubParsersAction) -> None:
    rank_cmd.register(sub, positive_int)


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    finetune_cmd.register(sub, positive_int)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_spaces, _add_profile, _add_run, _add_train, _add_search, _add_report, _add_export, _add_rank,
    _add_finetune, _add_config,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nas", description="Hardware-aware neural architecture search.")
    parser.add_argument("--version", action="version", version=f"nas {nas.__version__}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_RESUME_HINT = {
    "run": "run the same command again to resume: finished epochs and candidates are kept",
    "train-supernet": "run the same command again to resume from the last finished epoch",
    "search": "run the same command again to resume: finished candidates are kept",
    "report": "run it again",
    "export": "run it again (nothing half-written is taken for a checked export)",
}


def _one_line(message: str) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _summarise_warnings(caught: list[warnings.WarningMessage], command: str) -> None:
    """Noisy-latency warnings as one line; any other warning once per distinct message, clipped."""
    noisy = [w for w in caught if "noisy" in str(w.message)]
    if noisy:
        print(
            f"nas {command}: note: {len(noisy)} latency measurement(s) were noisy (spread above 10% of the median); "
            "they are flagged 'noisy' in the results. Close other work or raise the repeats for steadier figures.",
            file=sys.stderr,
        )
    seen: set[str] = set()
    for w in caught:
        text = _one_line(str(w.message))
        if w in noisy or text in seen:
            continue
        seen.add(text)
        print(f"nas {command}: warning: {text[:200]}", file=sys.stderr)


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from supernet import CheckpointError

    return (UsageError, CheckpointError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    if args.command in ("run", "search", "rank", "finetune"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are shown by our progress bar
    with warnings.catch_warnings(record=True) as caught:
        # The TorchScript ONNX exporter's note on Slice nodes it does not fold: about its own optimisation, not
        # the user's model (the exported graph is checked and timed as it is).
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        try:
            return func(args)
        except _bad_input_types() as err:
            print(f"nas {args.command}: error: {_one_line(str(err))}", file=sys.stderr)
            return 2
        except IncompleteError as err:  # the work ended short of what was asked: said, exit 1
            print(f"nas {args.command}: {_one_line(str(err))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            hint = _RESUME_HINT.get(args.command, "run it again")
            print(f"\nnas {args.command}: interrupted; {hint}", file=sys.stderr)
            return 130
        finally:
            _summarise_warnings(list(caught), args.command)


if __name__ == "__main__":
    sys.exit(main())
