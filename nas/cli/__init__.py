"""The ``nas`` command line."""

from nas.cli.main import main

__all__ = ["main"]
