"""Checks that an output path can be written, made before any work starts (a run must not fail at its end).

Each check walks up to the nearest existing ancestor: an ancestor that is a file, a target directory that is a
file (or a target file that is a directory), and a directory where a probe file cannot be created are bad input
(:class:`~nas.core.errors.UsageError`) naming the path and what is wrong. The probe is a real write (and delete) of
a temporary file, so read-only mounts are caught even for a user whose permission bits say yes (root).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nas.core.errors import UsageError, clip

__all__ = ["check_writable_dir", "check_writable_file"]


def _existing_ancestor(path: Path, what: str) -> Path:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{what} {clip(str(path))} lies under {clip(str(parent))}, which is a file, not a directory")
            return parent
    return Path.cwd()


def _probe(directory: Path, path: Path, what: str) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".nas-write-probe-", dir=directory)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UsageError(f"{what} {clip(str(path))} cannot be written ({reason} in {clip(str(directory))}); choose another") from None
    os.close(fd)
    Path(name).unlink(missing_ok=True)


def check_writable_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """``path`` is (or can be created as) a directory this process can write into. Creates nothing."""
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise UsageError(f"{what} {clip(str(target))} is an existing file, not a directory; choose another")
        _probe(target, target, what)
        return target
    _probe(_existing_ancestor(target, what), target, what)
    return target


def check_writable_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """``path`` can be written as a file: not a directory, its directory writable or creatable."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {clip(str(target))} is a directory; give a file name")
    parent = target.parent
    if parent.exists():
        if not parent.is_dir():
            raise UsageError(f"{what} {clip(str(target))} lies under {clip(str(parent))}, which is a file, not a directory")
        _probe(parent, target, what)
    else:
        _probe(_existing_ancestor(target, what), target, what)
    return target
