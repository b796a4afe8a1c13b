"""Reading RAPL energy counters through the Linux powercap sysfs tree.

The kernel's powercap framework (Documentation/power/powercap/powercap.rst) exposes the Intel
"Running Average Power Limit" counters as a tree of zones under ``/sys/class/powercap``::

    intel-rapl:0          name "package-0"   one zone per CPU package (socket)
    intel-rapl:0:0        name "core"        the cores, *inside* the package figure
    intel-rapl:0:1        name "uncore"      e.g. the integrated GPU, *inside* the package figure
    intel-rapl:0:2        name "dram"        the memory attached to that package, *outside* it
    intel-rapl:1          name "psys"        the whole platform (package + dram + more), when present

Each zone has ``energy_uj`` (a cumulative counter in microjoules that wraps around) and
``max_energy_range_uj`` (the value at which it wraps). AMD Zen processors are served by the same
``intel_rapl_msr`` driver: the same ``intel-rapl:N`` zones with a "package-N" name and a "core"
sub-zone, usually without "dram". Some Intel parts also register ``intel-rapl-mmio:N`` zones that
repeat the package counter through another interface; they are skipped so nothing counts twice.

The energy of a run is therefore the sum over the "package-*" zones and the "dram" zones: "core" and
"uncore" are already inside the package, and "psys" contains everything. Since Linux 5.10 (the
PLATYPUS side channel, CVE-2020-8694) ``energy_uj`` is readable by root only, so a permission error is
the common case for a normal user: it is reported as ``RaplUnavailable``, never as a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_POWERCAP_ROOT",
    "RaplDomain",
    "RaplUnavailable",
    "counter_delta_uj",
    "find_domains",
    "read_counters",
]

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

# Zone directories of the RAPL control type: "intel-rapl:<package>" and "intel-rapl:<package>:<sub>".
_ZONE_DIR = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")


class RaplUnavailable(RuntimeError):
    """The powercap tree is missing, has no usable zone, or cannot be read (the message says which)."""


@dataclass(frozen=True)
class RaplDomain:
    """One zone whose counter is summed: a package or the DRAM of a package."""

    zone: str  # directory name, e.g. "intel-rapl:0:2"
    name: str  # content of its `name` file, e.g. "dram"
    path: Path
    max_energy_range_uj: int

    @property
    def kind(self) -> str:
        return "dram" if self.name == "dram" else "package"


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as err:
        raise RaplUnavailable(
            f"cannot read {path}: permission denied (RAPL counters are root-only since Linux 5.10; "
            "run as root or grant read access to energy_uj)"
        ) from err
    except OSError as err:
        raise RaplUnavailable(f"cannot read {path}: {err.strerror or err}") from err


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError as err:
        raise RaplUnavailable(f"{path} holds {text!r}, not an integer") from err


def find_domains(root: Path = DEFAULT_POWERCAP_ROOT) -> list[RaplDomain]:
    """The package and DRAM zones under ``root``, in zone order, each checked readable once.

    Raises ``RaplUnavailable`` naming the reason when ``root`` does not exist, holds no package zone,
    or one of the chosen zones' files cannot be read.
    """
    if not root.is_dir():
        raise RaplUnavailable(f"{root} does not exist (no powercap/RAPL driver on this machine)")
    zones: list[tuple[tuple[int, int], str]] = []
    for entry in root.iterdir():
        match = _ZONE_DIR.match(entry.name)
        if match is not None:
            package, sub = match.group(1), match.group(2)
            zones.append(((int(package), -1 if sub is None else int(sub)), entry.name))
    zones.sort()
    domains: list[RaplDomain] = []
    for _, zone in zones:
        path = root / zone
        name = _read_text(path / "name")
        if not (name.startswith("package") or name == "dram"):
            continue  # core/uncore are inside the package; psys contains the package and more
        max_range = _read_int(path / "max_energy_range_uj")
        _read_int(path / "energy_uj")  # fail now, not in the middle of a measurement
        domains.append(RaplDomain(zone=zone, name=name, path=path, max_energy_range_uj=max_range))
    if not any(d.kind == "package" for d in domains):
        raise RaplUnavailable(f"no RAPL package zone (intel-rapl:N named package-N) under {root}")
    return domains


def read_counters(domains: list[RaplDomain]) -> dict[str, int]:
    """Current ``energy_uj`` of each domain, keyed by zone directory name."""
    return {d.zone: _read_int(d.path / "energy_uj") for d in domains}


def counter_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of one counter, allowing for one wrap-around.

    The counter runs from 0 to ``max_energy_range_uj`` and restarts at 0, so a reading lower than the
    previous one means it wrapped once: the energy is what was left to the top plus what came after.
    (More than one wrap cannot be detected; a package counter takes tens of minutes to wrap at full
    power, far longer than a measurement window.)
    """
    if before < 0 or after < 0 or max_energy_range_uj <= 0:
        raise ValueError(
            f"RAPL counters must be >= 0 and the range > 0; got before={before}, after={after}, "
            f"max_energy_range_uj={max_energy_range_uj}"
        )
    if after >= before:
        return after - before
    return max_energy_range_uj - before + after
