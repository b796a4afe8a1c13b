"""Errors the command line maps to exit codes."""

from __future__ import annotations

__all__ = ["IncompleteError", "UsageError"]


class UsageError(Exception):
    """Bad input from the user: the command exits with code 2 and this one-line message."""


class IncompleteError(Exception):
    """The work ended short of what was asked (e.g. fewer candidates than ``--trials``): exit code 1, this message."""
