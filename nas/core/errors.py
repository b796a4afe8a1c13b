"""Errors the command line maps to exit codes, and the one rule for echoing user input in a message."""

from __future__ import annotations

__all__ = ["MAX_ECHO", "IncompleteError", "UsageError", "clip"]

# At most this many characters of anything the user gave (a path, a JSON text, a value) appear in a message:
# a 10 MB argument must not become a 10 MB error line.
MAX_ECHO = 80


class UsageError(Exception):
    """Bad input from the user: the command exits with code 2 and this one-line message."""


def clip(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` (for strings) or ``str(value)``, on one line, cut to ``limit`` characters with a marker."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


class IncompleteError(Exception):
    """The work ended short of what was asked (e.g. fewer candidates than ``--trials``): exit code 1, this message."""
