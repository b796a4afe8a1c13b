"""Measured inference latency of any ``nn.Module``: PyTorch eager (CPU or CUDA) or ONNX Runtime.

Method (the same for every backend): eval mode and ``torch.inference_mode``; warm-up runs (at least ``warmup``
runs and ``warmup_time_s`` seconds, so caches, allocators and CPU clocks settle); then timed *samples*, each the
mean of ``runs_per_sample`` back-to-back runs (chosen automatically so one sample lasts about
``target_sample_s``: this averages out timer resolution and sub-millisecond scheduler noise), until at least
``repeats`` samples and ``min_time_s`` seconds are collected. The figures are the median, 10th/90th percentiles,
inter-quartile range, mean and minimum of the per-run times of the samples. The median is the headline: a few
preempted samples on a busy machine move the mean, not the median. When IQR / median exceeds ``noisy_threshold``
the result is flagged ``noisy`` and a ``RuntimeWarning`` is issued. On a shared machine whose other cores are busy
the whole distribution shifts (the thread's own CPU time grows, so it is contention, not preemption, and no
in-process filter removes it): the median then follows the load, while ``p10_ms`` and ``min_ms`` follow it much
less. The 1-minute load average is recorded in ``settings`` so a figure can be judged later.

Threads: ``torch.set_num_threads(threads)`` for the duration of the measurement, restored afterwards; ONNX
Runtime gets ``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``. Python's garbage collector is
paused while timing (as ``timeit`` does) and restored afterwards.

CUDA (per the CUDA semantics notes of the PyTorch documentation): work is queued asynchronously, so each sample
is bracketed by ``torch.cuda.Event(enable_timing=True)`` records on the current stream, followed by
``torch.cuda.synchronize()`` before ``elapsed_time`` is read. cuDNN benchmark and TF32 flags are recorded (and may
be set for the measurement, restored afterwards).

ONNX Runtime: the model is exported with ``torch.onnx.export`` (dynamo exporter, ``external_data=False``; the
TorchScript exporter ``dynamo=False`` only if the dynamo export fails, recorded in ``settings["exporter"]``) and run
in an ``InferenceSession`` on ``CPUExecutionProvider`` (``CUDAExecutionProvider`` when ``device="cuda"``).
``session.run`` is synchronous and returns host arrays, so a wall clock brackets it; on CUDA that includes the
host-device copies of inputs and outputs.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["BACKENDS", "DTYPES", "LatencyResult", "collect_samples", "cpu_name", "device_name", "latency_from_samples", "measure_latency"]

BACKENDS: tuple[str, ...] = ("eager", "onnxruntime")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


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


def _load_average() -> float | None:
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


def _check_device(device: str, backend: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} requested but CUDA is not available on this machine; allowed here: 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: {torch.cuda.device_count()} CUDA device(s), "
                f"allowed cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return dev


def _check_dtype(dtype: str | torch.dtype, backend: str) -> tuple[str, torch.dtype]:
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype}")
        name = names[dtype]
    elif dtype in DTYPES:
        name = dtype
    else:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if backend == "onnxruntime" and name != "float32":
        raise ValueError(f"backend 'onnxruntime' measures dtype 'float32' only, got {name!r}")
    return name, DTYPES[name]


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _cuda_flags(cudnn_benchmark: bool | None, allow_tf32: bool | None) -> Iterator[dict[str, Any]]:
    """Set (optionally) and record the CUDA backend flags; restore them afterwards."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    try:
        if cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        if allow_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
            torch.backends.cudnn.allow_tf32 = allow_tf32
        yield {
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cuda_version": str(torch.version.cuda),
            "cudnn_version": str(torch.backends.cudnn.version()),
        }
    finally:
        (
            torch.backends.cudnn.benchmark,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
        ) = saved


@contextlib.contextmanager
def _prepared(model: nn.Module, dev: torch.device, dtype: torch.dtype) -> Iterator[nn.Module]:
    """The model in eval mode on ``dev`` in ``dtype``; the caller's model is never moved or cast.

    A copy is made only when some floating parameter or buffer is on another device or dtype. Training flags
    are restored afterwards.
    """
    tensors = [*model.parameters(), *model.buffers()]
    needs_copy = any(t.device != dev or (t.is_floating_point() and t.dtype != dtype) for t in tensors)
    target = copy.deepcopy(model).to(device=dev, dtype=dtype) if needs_copy else model
    saved = [(m, m.training) for m in target.modules()]
    try:
        target.eval()
        yield target
    finally:
        for module, mode in saved:
            module.training = mode


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


def _eager_cpu_block(model: nn.Module, x: torch.Tensor) -> Callable[[int], float]:
    def run_block(k: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            model(x)
        return (time.perf_counter_ns() - t0) / 1e6

    return run_block


def _eager_cuda_block(model: nn.Module, x: torch.Tensor) -> Callable[[int], float]:
    def run_block(k: int) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(k):
            model(x)
        end.record()
        torch.cuda.synchronize()
        return float(start.elapsed_time(end))

    return run_block


def _export_onnx(model: nn.Module, example: torch.Tensor) -> tuple[bytes, str, str]:
    """ONNX bytes of ``model``, the exporter used and, if it fell back, why the dynamo export failed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(model, (example,), None, dynamo=True, external_data=False, verbose=False)
            if program is None:
                raise RuntimeError("torch.onnx.export returned no program")
            return program.model_proto.SerializeToString(), "dynamo", ""
        except Exception as exc:  # the dynamo exporter fails in many ways; the fallback is recorded
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            torch.onnx.export(model, (example,), path, dynamo=False, verbose=False)
            return path.read_bytes(), "torchscript", reason


def _onnxruntime_block(
    model: nn.Module, x: torch.Tensor, dev: torch.device, threads: int, settings: dict[str, Any]
) -> Callable[[int], float]:
    import onnxruntime as ort

    onnx_bytes, exporter, fallback_reason = _export_onnx(model, x)
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                "device='cuda' with backend 'onnxruntime' needs CUDAExecutionProvider; available here: "
                f"{ort.get_available_providers()}"
            )
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": dev.index or 0}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
    settings.update(
        {
            "exporter": exporter,
            "onnxruntime_version": ort.__version__,
            "execution_provider": session.get_providers()[0],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
            "execution_mode": str(options.execution_mode).split(".")[-1],
        }
    )
    if fallback_reason:
        settings["dynamo_export_error"] = fallback_reason
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}

    def run_block(k: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            session.run(None, feed)
        return (time.perf_counter_ns() - t0) / 1e6

    return run_block


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_request(
    model: object, input_shape: Sequence[int], device: str, backend: str, dtype: str | torch.dtype
) -> tuple[torch.device, str, torch.dtype, tuple[int, ...]]:
    """Validate what every measurement takes: a module, a per-sample input shape, a device, backend and dtype."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dev = _check_device(device, backend)
    dtype_name, torch_dtype = _check_dtype(dtype, backend)
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints (no batch dim), got {shape!r}")
    return dev, dtype_name, torch_dtype, shape


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int],
    *,
    device: str = "cpu",
    backend: str = "eager",
    batch_size: int = 1,
    dtype: str | torch.dtype = "float32",
    warmup: int = 10,
    warmup_time_s: float = 0.2,
    repeats: int = 50,
    min_time_s: float = 0.3,
    runs_per_sample: int | None = None,
    target_sample_s: float = 0.001,
    threads: int | None = None,
    noisy_threshold: float = 0.1,
    cudnn_benchmark: bool | None = None,
    allow_tf32: bool | None = None,
    seed: int = 0,
) -> LatencyResult:
    """Measure the latency of one forward pass of ``model`` on a ``(batch_size, *input_shape)`` input.

    ``input_shape`` is the shape of one sample, without the batch dimension (e.g. ``(3, 224, 224)``).
    ``threads`` defaults to the current ``torch.get_num_threads()``; it is set for the measurement and restored.
    ``cudnn_benchmark`` and ``allow_tf32`` (CUDA only) are left as they are when ``None``. The input is drawn
    from a generator seeded with ``seed``. The caller's model is not moved, cast or left in eval mode.
    """
    dev, dtype_name, torch_dtype, shape = _check_request(model, input_shape, device, backend, dtype)
    _check_positive("batch_size", batch_size)
    _check_positive("repeats", repeats)
    _check_positive("warmup", warmup, minimum=0)
    if runs_per_sample is not None:
        _check_positive("runs_per_sample", runs_per_sample)
    if threads is None:
        threads = torch.get_num_threads()
    _check_positive("threads", threads)
    if min_time_s < 0 or warmup_time_s < 0 or target_sample_s <= 0:
        raise ValueError(
            "min_time_s and warmup_time_s must be >= 0 and target_sample_s > 0, got "
            f"{min_time_s}, {warmup_time_s}, {target_sample_s}"
        )

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *shape), generator=generator).to(device=dev, dtype=torch_dtype)
    settings: dict[str, Any] = {
        "torch_version": torch.__version__,
        "interop_threads": torch.get_num_interop_threads(),
        "timer": "cuda_event" if dev.type == "cuda" and backend == "eager" else "perf_counter",
        "load_average_1min": _load_average(),
    }
    cuda_flags: contextlib.AbstractContextManager[dict[str, Any]] = (
        _cuda_flags(cudnn_benchmark, allow_tf32) if dev.type == "cuda" else contextlib.nullcontext({})
    )
    # CUDA events are recorded on the current stream of the current device: make it the measured device.
    device_context = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with (
        _torch_threads(threads),
        device_context,
        cuda_flags as flag_settings,
        _prepared(model, dev, torch_dtype) as ready,
        torch.inference_mode(),
    ):
        settings.update(flag_settings or {})
        if backend == "onnxruntime":
            with torch.inference_mode(False), torch.no_grad():
                run_block = _onnxruntime_block(ready, x.clone(), dev, threads, settings)
        elif dev.type == "cuda":
            run_block = _eager_cuda_block(ready, x)
        else:
            run_block = _eager_cpu_block(ready, x)
        with _gc_paused():
            samples, block = _collect(
                run_block,
                warmup=warmup,
                warmup_time_s=warmup_time_s,
                repeats=repeats,
                min_time_s=min_time_s,
                runs_per_sample=runs_per_sample,
                target_sample_s=target_sample_s,
            )

    return latency_from_samples(
        samples,
        runs_per_sample=block,
        warmup=warmup,
        device=str(dev),
        device_name=device_name(str(dev)),
        backend=backend,
        threads=threads,
        batch_size=batch_size,
        dtype=dtype_name,
        input_shape=shape,
        settings=settings,
        noisy_threshold=noisy_threshold,
    )


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
    with _gc_paused():
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
