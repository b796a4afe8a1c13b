"""Argument types and shared flags of the ``nas`` command: the one place a number or a budget is parsed.

Every flag has a help text (a test walks the parser to check). Budget flags are shared by ``nas report`` and
``nas export`` so that both select the same candidate from the same words.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

from nas.core.errors import UsageError, clip

__all__ = [
    "BUDGET_FLAGS",
    "Parser",
    "add_budget_flags",
    "budgets_from_args",
    "finite_non_negative_float",
    "positive_int",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one short line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_short(message)} (see '{self.prog} --help')\n")


def _short(message: str, limit: int = 240) -> str:
    """argparse's message (which may quote the user's argument) on one line, cut to ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{clip(text)} is not a number") from None


def positive_float(text: str) -> float:
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{clip(text)} must be a finite positive number")
    return value


def fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{clip(text)} must be between 0 and 1")
    return value


def finite_non_negative_float(text: str) -> float:
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{clip(text)} must be a finite non-negative number (leave the flag out for no bound)")
    return value


# flag -> (argparse dest, help)
BUDGET_FLAGS: dict[str, tuple[str, str]] = {
    "--max-latency-ms": ("max_latency_ms", "latency budget in ms (median, as measured in the search)"),
    "--max-energy-mj": ("max_energy_mj", "energy budget in mJ per inference"),
    "--max-memory-access-mb": ("max_memory_access_mb", "memory-access budget in MB (10^6 bytes)"),
}


def budget_arg(text: str) -> float | str:
    """A budget on the command line: a finite non-negative number, or a relative one ('60%', '125% of fastest')."""
    if "%" in text:
        from nas.core.budgets import parse_budget

        try:
            parse_budget("latency_ms", text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(_short(str(err).replace("budget latency_ms: ", ""))) from None
        return text
    return finite_non_negative_float(text)


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """The budget flags; without any, the run's ``report.budgets`` apply."""
    group = parser.add_argument_group("budgets (default: the run config's report.budgets)")
    relative = "; or relative: '60%%' of the most accurate candidate's, '125%% of fastest'"
    for flag, (dest, text) in BUDGET_FLAGS.items():
        group.add_argument(flag, dest=dest, type=budget_arg, metavar="X", help=text + relative)


def budgets_from_args(args: argparse.Namespace) -> dict[str, float | str] | None:
    """Budgets in record units from the flags, or None when no budget flag was given."""
    from nas.report.selection import parse_budgets

    given: dict[str, Any] = {dest: getattr(args, dest, None) for dest, _ in BUDGET_FLAGS.values()}
    if all(v is None for v in given.values()):
        return None
    try:
        return parse_budgets(**given)
    except ValueError as err:
        raise UsageError(str(err)) from None
