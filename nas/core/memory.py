"""Will it fit? Estimates of the memory a step needs, checked against what the machine has before the step runs.

A request that cannot fit (an input size of 100,000 pixels, a data set resized to 20,000 pixels a side) must be
refused in a second with a short message, not end minutes later in the kernel's OOM killer. Estimates are upper
bounds of the dominant term only (tensors of float32); the check allows half of the memory available now.
"""

from __future__ import annotations

import os
from pathlib import Path

from nas.core.errors import UsageError

__all__ = ["FLOAT_BYTES", "available_bytes", "check_fits", "human_bytes"]

FLOAT_BYTES = 4
_SHARE = 0.5  # of the available memory one request may plan to use


def available_bytes() -> int:
    """Memory available to new allocations now: ``MemAvailable`` of /proc/meminfo, else total physical memory."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def human_bytes(n: float) -> str:
    for bound, unit in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= bound:
            return f"{n / bound:.3g} {unit}"
    return f"{int(n)} B"


def check_fits(needed: float, what: str, allowed: str, *, available: int | None = None) -> None:
    """Raise UsageError when ``needed`` bytes exceed half the available memory; ``allowed`` says what would fit."""
    free = available_bytes() if available is None else available
    if needed > _SHARE * free:
        raise UsageError(
            f"{what} needs about {human_bytes(needed)} of memory, more than this machine can give "
            f"({human_bytes(free)} available); {allowed}"
        )
