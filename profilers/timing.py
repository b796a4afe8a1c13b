"""The timing protocol every latency figure of this project shares, and the result it produces.

The protocol (``PROTOCOL``, recorded in every result's ``protocol``):

1. Warm-up: at least ``warmup`` runs and ``warmup_time_s`` seconds, so caches, allocators and CPU clocks settle.
2. Timed *samples*, each the mean of ``runs_per_sample`` back-to-back runs (chosen so one sample lasts about
   ``target_sample_s``: this averages out timer resolution and sub-millisecond scheduler noise), with Python's
   garbage collector paused (as ``timeit`` does).
3. Stopping rule: at least ``repeats`` samples and ``min_time_s`` seconds; then sampling goes on until the
   distribution-free 95 % confidence interval of the median (order statistics ``n/2 -/+ 1.96 sqrt(n)/2``, no
   assumption on the shape of the distribution) is within ``+/- ci_target`` of the median, or ``max_time_s``
   has passed (then ``converged`` is false and the interval says how sure the figure is).
4. Estimator: the median of the samples (a few preempted samples move the mean, not the median), with its
   interval, the 10th/90th percentiles, the IQR, the mean, the minimum, and the quantiles every 5 % (``quantiles_ms``,
   from which ``P(latency <= bound)`` is read: :func:`prob_at_most`).

:func:`latency_from_samples` turns the samples into a :class:`LatencyResult`. What runs (eager PyTorch, CUDA, an
ONNX Runtime session) is the caller's ``run_block``; :mod:`profilers.latency` supplies those.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "PROTOCOL",
    "QUANTILE_LEVELS",
    "LatencyResult",
    "collect_samples",
    "cpu_name",
    "device_name",
    "gc_paused",
    "latency_from_samples",
    "load_average",
    "median_ci",
    "prob_at_most",
    "quantile_at",
]

# The name of the protocol this module implements; results carry it with its settings in ``protocol``.
PROTOCOL = "median-ci"
# The levels (in %) of ``LatencyResult.quantiles_ms``: every 5 %, 0 and 100 being the minimum and maximum.
QUANTILE_LEVELS: tuple[float, ...] = tuple(float(q) for q in range(0, 101, 5))
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one inference of ``batch_size`` inputs, in milliseconds, with everything needed to trust it."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    warmup: int
    runs_per_sample: int
    device: str
    device_name: str
    backend: str
    threads: int
    batch_size: int
    dtype: str
    input_shape: tuple[int, ...]
    noisy: bool
    relative_spread: float
    settings: dict[str, Any] = field(default_factory=dict)
    # The distribution and how sure the median is (empty / NaN in results written before the protocol had them).
    quantiles_ms: tuple[float, ...] = ()  # at QUANTILE_LEVELS
    ci_low_ms: float = math.nan  # 95 % interval of the median
    ci_high_ms: float = math.nan
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["settings"] = dict(self.settings)
        data["quantiles_ms"] = list(self.quantiles_ms)
        data["protocol"] = dict(self.protocol)
        return data

    def prob_at_most(self, bound_ms: float) -> float:
        """P(a sample's latency <= ``bound_ms``), read from the quantiles (the median and p10/p90 if none)."""
        if self.quantiles_ms:
            return prob_at_most(self.quantiles_ms, bound_ms)
        return prob_at_most((self.p10_ms, self.median_ms, self.p90_ms), bound_ms, levels=(10.0, 50.0, 90.0))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        return cls(
            median_ms=float(data["median_ms"]),
            p10_ms=float(data["p10_ms"]),
            p90_ms=float(data["p90_ms"]),
            iqr_ms=float(data["iqr_ms"]),
            mean_ms=float(data["mean_ms"]),
            min_ms=float(data["min_ms"]),
            repeats=int(data["repeats"]),
            warmup=int(data["warmup"]),
            runs_per_sample=int(data["runs_per_sample"]),
            device=str(data["device"]),
            device_name=str(data["device_name"]),
            backend=str(data["backend"]),
            threads=int(data["threads"]),
            batch_size=int(data["batch_size"]),
            dtype=str(data["dtype"]),
            input_shape=tuple(int(v) for v in data["input_shape"]),
            noisy=bool(data["noisy"]),
            relative_spread=float(data["relative_spread"]),
            settings=dict(data.get("settings", {})),
            quantiles_ms=tuple(float(v) for v in data.get("quantiles_ms", ())),
            ci_low_ms=float(data.get("ci_low_ms", math.nan)),
            ci_high_ms=float(data.get("ci_high_ms", math.nan)),
            protocol=dict(data.get("protocol", {})),
        )


def cpu_name() -> str:
    """The CPU model (``model name`` of ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: str) -> str:
    """Human-readable name of ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev.index if dev.index is not None else torch.cuda.current_device())
    return cpu_name()


def load_average() -> float | None:
    """The 1-minute load average when the platform has one: a busy machine explains a noisy figure."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _percentile(ordered: list[float], q: float) -> float:
    """Linearly interpolated percentile (numpy's default) of an already sorted list."""
    if not ordered:
        raise ValueError("cannot take a percentile of no samples")
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median_ci(ordered: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median of already sorted samples (order statistics).

    Ranks ``n/2 -/+ 1.96 sqrt(n)/2`` (the normal approximation of the binomial count of samples under the
    median); with fewer than 6 samples the interval is the whole range.
    """
    n = len(ordered)
    if n == 0:
        raise ValueError("cannot take an interval of no samples")
    half = _Z95 * math.sqrt(n) / 2.0
    lo = max(0, math.floor(n / 2.0 - half) - 1)
    hi = min(n - 1, math.ceil(1 + n / 2.0 + half) - 1)
    return ordered[lo], ordered[hi]


def quantile_at(quantiles: tuple[float, ...] | list[float], level: float, levels: tuple[float, ...] | None = None) -> float:
    """The latency at ``level`` (a probability in [0, 1]) interpolated in ``quantiles`` (at ``levels``, in %)."""
    levels = QUANTILE_LEVELS if levels is None else levels
    if len(quantiles) != len(levels) or not quantiles:
        raise ValueError(f"need {len(levels)} quantiles, got {len(quantiles)}")
    pct = min(max(100.0 * level, levels[0]), levels[-1])
    for i in range(1, len(levels)):
        if pct <= levels[i]:
            share = (pct - levels[i - 1]) / (levels[i] - levels[i - 1])
            return quantiles[i - 1] + share * (quantiles[i] - quantiles[i - 1])
    return quantiles[-1]


def prob_at_most(quantiles: tuple[float, ...] | list[float], bound: float, levels: tuple[float, ...] | None = None) -> float:
    """P(latency <= ``bound``): the empirical distribution function, interpolated between ``quantiles``.

    0 below the first quantile and 1 at or above the last (with ``QUANTILE_LEVELS``, the minimum and maximum).
    NaN without quantiles or with a NaN bound.
    """
    levels = QUANTILE_LEVELS if levels is None else levels
    if not quantiles or len(quantiles) != len(levels) or math.isnan(bound) or any(math.isnan(q) for q in quantiles):
        return math.nan
    # Outside the quantiles known: 0 / 1 at the minimum / maximum, else halfway to them (a guess, said so).
    if bound < quantiles[0]:
        return levels[0] / 200.0
    if bound >= quantiles[-1]:
        return (100.0 + levels[-1]) / 200.0
    for i in range(1, len(levels)):
        if bound < quantiles[i]:
            width = quantiles[i] - quantiles[i - 1]
            share = (bound - quantiles[i - 1]) / width if width > 0 else 1.0
            return (levels[i - 1] + share * (levels[i] - levels[i - 1])) / 100.0
    return 1.0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _collect(
    run_block: Callable[[int], float],
    *,
    warmup: int,
    warmup_time_s: float,
    repeats: int,
    min_time_s: float,
    runs_per_sample: int | None,
    target_sample_s: float,
    ci_target: float,
    max_time_s: float,
) -> tuple[list[float], int]:
    """Warm up, choose the block size, and return the per-run times (ms) of the samples and the block size.

    ``run_block(k)`` runs the model ``k`` times back to back and returns the elapsed time in milliseconds.
    Sampling stops once ``repeats`` samples and ``min_time_s`` are collected and the median's 95 % interval is
    within ``+/- ci_target`` of it (``ci_target`` 0: no interval rule), or after ``max_time_s``.
    """
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_time_s:
        run_block(1)
        done += 1
    if runs_per_sample is None:
        probe = sorted(run_block(1) for _ in range(5))
        single_ms = max(probe[len(probe) // 2], 1e-6)
        runs_per_sample = max(1, min(1000, round(target_sample_s * 1000.0 / single_ms)))
    samples: list[float] = []
    start = time.perf_counter()
    next_check = repeats
    while True:
        samples.append(run_block(runs_per_sample) / runs_per_sample)
        if len(samples) < repeats:
            continue
        elapsed = time.perf_counter() - start
        if elapsed < min_time_s:
            continue
        if ci_target <= 0 or elapsed >= max(max_time_s, min_time_s):
            break
        if len(samples) >= next_check:
            ordered = sorted(samples)
            lo, hi = median_ci(ordered)
            median = _percentile(ordered, 50)
            if median > 0 and max(median - lo, hi - median) <= ci_target * median:
                break
            next_check = len(samples) + max(8, len(samples) // 8)
    return samples, runs_per_sample


def collect_samples(
    run_block: Callable[[int], float],
    *,
    warmup: int,
    warmup_time_s: float,
    repeats: int,
    min_time_s: float,
    runs_per_sample: int | None,
    target_sample_s: float,
    ci_target: float = 0.0,
    max_time_s: float = 0.0,
) -> tuple[list[float], int]:
    """Time ``run_block(k)`` (k runs, returns elapsed ms) as ``measure_latency`` does, garbage collection paused.

    Returns the samples (ms per run) and the runs per sample. For timing something this module does not run.
    ``ci_target`` > 0 adds the interval stopping rule (see the module docstring), bounded by ``max_time_s``.
    """
    with gc_paused():
        return _collect(
            run_block,
            warmup=warmup,
            warmup_time_s=warmup_time_s,
            repeats=repeats,
            min_time_s=min_time_s,
            runs_per_sample=runs_per_sample,
            target_sample_s=target_sample_s,
            ci_target=ci_target,
            max_time_s=max_time_s,
        )


def latency_from_samples(
    samples: list[float],
    *,
    runs_per_sample: int,
    warmup: int,
    device: str,
    device_name: str,
    backend: str,
    threads: int,
    batch_size: int,
    dtype: str,
    input_shape: tuple[int, ...],
    settings: dict[str, Any],
    noisy_threshold: float = 0.1,
    protocol: dict[str, Any] | None = None,
) -> LatencyResult:
    """Median, percentiles and spread of timed samples (ms per run), warning when they are too noisy to trust.

    Shared by every backend, and by code timing something this module did not build (an existing ONNX file).
    """
    if not samples:
        raise ValueError("no latency samples to summarise")
    ordered = sorted(samples)
    median = _percentile(ordered, 50)
    ci_low, ci_high = median_ci(ordered)
    iqr = _percentile(ordered, 75) - _percentile(ordered, 25)
    spread = iqr / median if median > 0 else math.inf
    noisy = spread > noisy_threshold
    if noisy:
        warnings.warn(
            f"latency measurement is noisy: IQR/median = {spread:.1%} > {noisy_threshold:.0%} "
            f"(median {median:.4f} ms over {len(samples)} samples, {backend}); close other work or raise repeats",
            RuntimeWarning,
            stacklevel=3,
        )
    return LatencyResult(
        median_ms=median,
        p10_ms=_percentile(ordered, 10),
        p90_ms=_percentile(ordered, 90),
        iqr_ms=iqr,
        mean_ms=sum(samples) / len(samples),
        min_ms=ordered[0],
        repeats=len(samples),
        warmup=warmup,
        runs_per_sample=runs_per_sample,
        device=device,
        device_name=device_name,
        backend=backend,
        threads=threads,
        batch_size=batch_size,
        dtype=dtype,
        input_shape=input_shape,
        noisy=noisy,
        relative_spread=spread,
        settings=settings,
        quantiles_ms=tuple(_percentile(ordered, q) for q in QUANTILE_LEVELS),
        ci_low_ms=ci_low,
        ci_high_ms=ci_high,
        protocol=_protocol_record(protocol or {}, median, ci_low, ci_high),
    )


def _protocol_record(options: dict[str, Any], median: float, ci_low: float, ci_high: float) -> dict[str, Any]:
    """What was done to get the figure: the protocol's name, its settings, and whether the interval rule was met."""
    half = max(median - ci_low, ci_high - median) / median if median > 0 else math.inf
    record: dict[str, Any] = {"name": PROTOCOL, "estimator": "median", "interval": "95% order-statistics CI of the median"}
    record.update(options)
    record["ci_half_width_relative"] = half
    target = float(options.get("ci_target", 0.0) or 0.0)
    record["converged"] = bool(target <= 0 or half <= target)
    return record
