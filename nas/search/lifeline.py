"""Worker processes die with their parent: a killed ``nas search`` leaves nothing running and writing.

On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes) sends the worker SIGKILL
when the parent dies, however it dies (``kill -9`` included). Elsewhere, or if prctl fails, a daemon thread
polls ``os.getppid()`` each second and ends the process when the parent is gone. Either way the check
``os.getppid() != parent`` right after covers a parent that died before the worker got here.

A killed worker's running trial is failed and retried by whoever searches next: by heartbeat on an RDB
storage, or by the next search of the run on the journal file.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl_deathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, interval: float) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)  # no cleanup: the parent is gone, as if we had been killed with it
        threading.Event().wait(interval)


def die_with_parent(parent: int, *, interval: float = 1.0) -> str:
    """Make this process end when process ``parent`` ends. Returns how: ``"prctl"`` or ``"polling"``."""
    how = "prctl" if _prctl_deathsig() else "polling"
    if how == "polling":
        threading.Thread(target=_watch, args=(parent, interval), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was told to watch it
        os._exit(1)
    return how
