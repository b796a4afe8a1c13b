"""Errors the command line maps to exit codes."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad input from the user: the command exits with code 2 and this one-line message."""
