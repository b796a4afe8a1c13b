"""Latency lookup table: predict a network's latency from separately measured blocks.

A network built as a chain of blocks (the search spaces of this project are) is predicted as
``block_scale * (sum of its blocks' measured latencies) + overhead_ms``: the overhead is what no single block
sees (input handling, module dispatch, the network's own ``forward``), the scale the context effect that grows
with the network (blocks timed alone run with hot caches). Both are fitted on a few calibration networks
measured end to end (:func:`fit_line`): the overhead is the median residual, so one disturbed network does not
drag the fit, and the scale (only when ``fit_scale``) the Theil-Sen slope. Blocks are keyed by a caller-chosen
string (e.g. ``"shuffle_k3_c116_s1"``) and the shape of their input; each is measured once and reused. This is
the one table of the project: ``nas`` fills it with a search space's blocks, and saves it atomically here.

A table is only valid where it was measured: it records the device, its name, the backend, threads, batch size and
dtype, and :meth:`LatencyTable.load` refuses a table measured under another setting.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from profilers.latency import check_device, check_dtype, measure_latency
from profilers.timing import device_name

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from typing_extensions import Self

    from profilers.timing import LatencyResult

    BlockSource = nn.Module | Callable[[], nn.Module]
    Block = tuple[str, BlockSource, Sequence[int]]

__all__ = ["STATISTICS", "LatencyEntry", "LatencyTable", "fit_line"]

STATISTICS: tuple[str, ...] = ("median", "p10", "min")

_FORMAT_VERSION = 1

# A slope is fitted only when the calibration sums spread by this share of their mean, and kept in these bounds.
_MIN_RELATIVE_SPREAD = 0.05
_SCALE_BOUNDS = (0.5, 2.0)


def fit_line(sums: Sequence[float], measured: Sequence[float], *, slope: bool) -> tuple[float, float]:
    """``(scale, overhead)`` of ``measured ~ scale * sums + overhead``, robust to a few disturbed networks.

    The overhead is the median residual; with ``slope`` (and at least three sums spread enough to tell one)
    the scale is the Theil-Sen estimate, the median of the pairwise slopes, kept in ``_SCALE_BOUNDS``.
    Without calibration networks: ``(1.0, 0.0)``.
    """
    if not sums:
        return 1.0, 0.0
    scale = 1.0
    mean_x = statistics.fmean(sums)
    if slope and len(sums) >= 3 and mean_x > 0 and max(sums) - min(sums) >= _MIN_RELATIVE_SPREAD * mean_x:
        pairs = [
            (measured[j] - measured[i]) / (sums[j] - sums[i])
            for i in range(len(sums))
            for j in range(i + 1, len(sums))
            if sums[j] != sums[i]
        ]
        scale = min(max(statistics.median(pairs), _SCALE_BOUNDS[0]), _SCALE_BOUNDS[1])
    return scale, statistics.median(y - scale * x for x, y in zip(sums, measured))


def _shape_text(input_shape: Sequence[int]) -> str:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints (no batch dim), got {shape!r}")
    return "x".join(str(s) for s in shape)


def _module_of(source: BlockSource) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    if callable(source):
        module = source()
        if isinstance(module, nn.Module):
            return module
        raise ValueError(f"a block factory must return an nn.Module, got {type(module).__name__}")
    raise ValueError(f"a block must be an nn.Module or a callable returning one, got {type(source).__name__}")


@dataclass(frozen=True)
class LatencyEntry:
    """The measured latency of one block on one input shape."""

    key: str
    input_shape: tuple[int, ...]
    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    repeats: int

    def value(self, statistic: str) -> float:
        """The latency (ms) under ``statistic`` (one of :data:`STATISTICS`)."""
        return float(getattr(self, f"{statistic}_ms"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "input_shape": list(self.input_shape),
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "min_ms": self.min_ms,
            "repeats": self.repeats,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyEntry:
        return cls(
            key=str(data["key"]),
            input_shape=tuple(int(v) for v in data["input_shape"]),
            median_ms=float(data["median_ms"]),
            p10_ms=float(data["p10_ms"]),
            p90_ms=float(data["p90_ms"]),
            min_ms=float(data["min_ms"]),
            repeats=int(data["repeats"]),
        )


@dataclass
class LatencyTable:
    """Block latencies measured under one setting (device, backend, threads, batch size, dtype).

    ``latency_options`` are passed to :func:`profilers.latency.measure_latency` for every measurement
    (``repeats``, ``warmup``, ``min_time_s`` ...). ``threads`` defaults to the current
    ``torch.get_num_threads()`` and is fixed for the table's lifetime. ``statistic`` says which figure of each
    measurement the table adds up: the ``median`` (default), or the ``p10``/``min``, which follow the load of a
    shared machine much less (every entry keeps all three; :meth:`with_statistic` switches). ``block_scale``
    multiplies the block sum; it is fitted only when ``fit_scale``, else 1.
    """

    device: str = "cpu"
    backend: str = "eager"
    threads: int | None = None
    batch_size: int = 1
    dtype: str = "float32"
    latency_options: dict[str, Any] = field(default_factory=dict)
    statistic: str = "median"
    device_name: str = ""
    entries: dict[str, LatencyEntry] = field(default_factory=dict)
    overhead_ms: float = 0.0
    block_scale: float = 1.0
    fit_scale: bool = False
    calibration: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        dev = check_device(self.device, self.backend)
        self.device = str(dev)
        self.dtype, _ = check_dtype(self.dtype, self.backend)
        if self.threads is None:
            self.threads = torch.get_num_threads()
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        clashing = sorted(set(self.latency_options) & {"device", "backend", "batch_size", "dtype", "threads"})
        if clashing:
            raise ValueError(f"latency_options may not set {clashing}: they are fields of the table")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {list(STATISTICS)}, got {self.statistic!r}")
        if not self.device_name:
            self.device_name = device_name(self.device)

    # --- measuring -----------------------------------------------------------------------------------

    @staticmethod
    def entry_key(key: str, input_shape: Sequence[int]) -> str:
        """The table key of block ``key`` on an input of ``input_shape`` (no batch dim), e.g. ``"conv3@16x8x8"``."""
        if not isinstance(key, str) or not key or "@" in key:
            raise ValueError(f"a block key must be a non-empty string without '@', got {key!r}")
        return f"{key}@{_shape_text(input_shape)}"

    def __contains__(self, item: tuple[str, Sequence[int]]) -> bool:
        key, input_shape = item
        return self.entry_key(key, input_shape) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def _measure(self, module: nn.Module, input_shape: Sequence[int]) -> LatencyResult:
        return measure_latency(
            module,
            tuple(input_shape),
            device=self.device,
            backend=self.backend,
            batch_size=self.batch_size,
            dtype=self.dtype,
            threads=self.threads,
            **self.latency_options,
        )

    def measure(self, key: str, module: BlockSource, input_shape: Sequence[int]) -> float:
        """The latency (ms, under ``statistic``) of block ``key`` on ``input_shape``: measured once, then read.

        ``module`` may be a factory, called only when the block is not in the table yet.
        """
        entry_key = self.entry_key(key, input_shape)
        entry = self.entries.get(entry_key)
        if entry is None:
            result = self._measure(_module_of(module), input_shape)
            entry = LatencyEntry(
                key=key,
                input_shape=tuple(input_shape),
                median_ms=result.median_ms,
                p10_ms=result.p10_ms,
                p90_ms=result.p90_ms,
                min_ms=result.min_ms,
                repeats=result.repeats,
            )
            self.entries[entry_key] = entry
        return entry.value(self.statistic)

    def block_sum(self, blocks: Sequence[Block]) -> float:
        """Sum of the blocks' latencies (ms), measuring the blocks not in the table yet."""
        if not blocks:
            raise ValueError("blocks must list at least one (key, module or factory, input_shape) triple")
        return sum(self.measure(key, source, shape) for key, source, shape in blocks)

    def predict(self, blocks: Sequence[Block]) -> float:
        """Predicted latency (ms) of the network made of ``blocks``: their scaled sum plus the fitted overhead."""
        return self.block_scale * self.block_sum(blocks) + self.overhead_ms

    def calibrate(self, networks: Sequence[tuple[nn.Module, Sequence[int], Sequence[Block]]]) -> float:
        """Fit the per-network overhead on ``(model, input_shape, blocks)`` calibration networks.

        Each model is measured end to end; the fit is :meth:`fit_overhead`'s.
        Returns the overhead in ms; the measurements (all statistics) are kept in ``calibration``.
        """
        if not networks:
            raise ValueError("calibrate needs at least one (model, input_shape, blocks) network")
        records = []
        for model, input_shape, blocks in networks:
            result = self._measure(model, input_shape)
            self.block_sum(blocks)
            records.append(
                {
                    "input_shape": list(input_shape),
                    "block_keys": [self.entry_key(key, shape) for key, _, shape in blocks],
                    "measured_ms": {stat: float(getattr(result, f"{stat}_ms")) for stat in STATISTICS},
                }
            )
        self.calibration = records
        return self.fit_overhead()

    def calibration_sums(self) -> list[float]:
        """The block sum (ms, under ``statistic``) of every calibration network.

        A record's sum is the one timed together with the network (``block_sum_ms``) when it has one, else the
        sum of the table's entries.
        """
        return [
            rec["block_sum_ms"][self.statistic]
            if "block_sum_ms" in rec
            else sum(self.entries[k].value(self.statistic) for k in rec["block_keys"])
            for rec in self.calibration
        ]

    def residuals(self) -> list[float]:
        """``measured - sum of blocks`` (ms, under ``statistic``) of every calibration network."""
        return [rec["measured_ms"][self.statistic] - s for rec, s in zip(self.calibration, self.calibration_sums())]

    def fit_overhead(self) -> float:
        """Fit ``block_scale`` (if ``fit_scale``) and ``overhead_ms`` on the calibration networks; return the overhead."""
        measured = [rec["measured_ms"][self.statistic] for rec in self.calibration]
        self.block_scale, self.overhead_ms = fit_line(self.calibration_sums(), measured, slope=self.fit_scale)
        return self.overhead_ms

    def with_statistic(self, statistic: str) -> Self:
        """A copy of the table adding up ``statistic`` instead, its overhead refitted on the same calibration."""
        data = self.to_dict()
        data["statistic"] = statistic
        table = type(self).from_dict(data)
        table.fit_overhead()
        return table

    # --- persistence ---------------------------------------------------------------------------------

    def setting(self) -> dict[str, Any]:
        """What a table must match to be reused."""
        return {
            "device": self.device,
            "device_name": self.device_name,
            "backend": self.backend,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            **self.setting(),
            "torch_version": torch.__version__,
            "latency_options": dict(self.latency_options),
            "statistic": self.statistic,
            "overhead_ms": self.overhead_ms,
            "block_scale": self.block_scale,
            "fit_scale": self.fit_scale,
            "calibration": list(self.calibration),
            "entries": [e.to_dict() for e in self.entries.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"latency table format_version {data.get('format_version')!r} is not supported; "
                f"allowed: {_FORMAT_VERSION}"
            )
        table = cls(
            device=str(data["device"]),
            backend=str(data["backend"]),
            threads=int(data["threads"]),
            batch_size=int(data["batch_size"]),
            dtype=str(data["dtype"]),
            latency_options=dict(data.get("latency_options", {})),
            statistic=str(data.get("statistic", "median")),
            device_name=str(data["device_name"]),
            overhead_ms=float(data.get("overhead_ms", 0.0)),
            block_scale=float(data.get("block_scale", 1.0)),
            fit_scale=bool(data.get("fit_scale", False)),
            calibration=list(data.get("calibration", [])),
        )
        for raw in data.get("entries", []):
            entry = LatencyEntry.from_dict(raw)
            table.entries[cls.entry_key(entry.key, entry.input_shape)] = entry
        table.load_extra(data)
        return table

    def load_extra(self, data: dict[str, Any]) -> None:
        """Read the fields a subclass adds from ``data`` (what its ``to_dict`` wrote); nothing here."""

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON atomically: a temporary file in the same folder, renamed over ``path``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_dict(), handle, indent=1)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        backend: str = "eager",
        threads: int | None = None,
        batch_size: int = 1,
        dtype: str = "float32",
    ) -> Self:
        """Load a table for reuse under the given setting; refuse one measured under another.

        ``threads`` defaults to the current ``torch.get_num_threads()``. The device's name (e.g. the CPU
        model) must match too: a table from another machine describes another device.
        """
        table = cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        wanted = cls(device=device, backend=backend, threads=threads, batch_size=batch_size, dtype=dtype).setting()
        have = table.setting()
        differing = {k: (have[k], wanted[k]) for k in wanted if have[k] != wanted[k]}
        if differing:
            detail = ", ".join(f"{k}: table {a!r} vs requested {b!r}" for k, (a, b) in differing.items())
            raise ValueError(
                f"latency table {path} was measured under another setting ({detail}); "
                "measure a new table for this setting"
            )
        return table
