"""The timing protocol every latency figure of this project shares, and the result it produces.

Warm-up runs (at least ``warmup`` runs and ``warmup_time_s`` seconds, so caches, allocators and CPU clocks
settle); then timed *samples*, each the mean of ``runs_per_sample`` back-to-back runs (chosen so one sample
lasts about ``target_sample_s``: this averages out timer resolution and sub-millisecond scheduler noise), until
at least ``repeats`` samples and ``min_time_s`` seconds are collected, with Python's garbage collector paused
(as ``timeit`` does). :func:`latency_from_samples` turns the samples into a :class:`LatencyResult`: median,
10th/90th percentiles, inter-quartile range, mean and minimum. What runs (eager PyTorch, CUDA, an ONNX Runtime
session) is the caller's ``run_block``; :mod:`profilers.latency` supplies those.
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

__all__ = ["LatencyResult", "collect_samples", "cpu_name", "device_name", "gc_paused", "latency_from_samples", "load_average"]


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["settings"] = dict(self.settings)
        return data

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
) -> tuple[list[float], int]:
    """Warm up, choose the block size, and return the per-run times (ms) of the samples and the block size.

    ``run_block(k)`` runs the model ``k`` times back to back and returns the elapsed time in milliseconds.
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
    while len(samples) < repeats or time.perf_counter() - start < min_time_s:
        samples.append(run_block(runs_per_sample) / runs_per_sample)
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
) -> tuple[list[float], int]:
    """Time ``run_block(k)`` (k runs, returns elapsed ms) as ``measure_latency`` does, garbage collection paused.

    Returns the samples (ms per run) and the runs per sample. For timing something this module does not run.
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
) -> LatencyResult:
    """Median, percentiles and spread of timed samples (ms per run), warning when they are too noisy to trust.

    Shared by every backend, and by code timing something this module did not build (an existing ONNX file).
    """
    if not samples:
        raise ValueError("no latency samples to summarise")
    ordered = sorted(samples)
    median = _percentile(ordered, 50)
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
    )
