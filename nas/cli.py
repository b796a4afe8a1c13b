"""The `nas` command: argument parsing and dispatch. Each command's work lives in its own module.

Exit codes: 0 success; 2 bad input (one line on stderr naming what is wrong and what is allowed); 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas.errors import UsageError

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
    from nas.spaces_cmd import show_spaces

    return show_spaces(args.space, as_json=args.json)


def _cmd_profile(args: argparse.Namespace) -> int:
    from nas.profile_cmd import ProfileRequest, run_profile

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
        as_json=args.json,
    )
    return run_profile(request)


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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_profile)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
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
