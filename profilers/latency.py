"""Measured inference latency of any ``nn.Module``: PyTorch eager (CPU or CUDA) or ONNX Runtime.

Method (the same for every backend): eval mode and ``torch.inference_mode``; warm-up runs (at least ``warmup``
runs and ``warmup_time_s`` seconds, so caches, allocators and CPU clocks settle); then timed *samples*, each the
mean of ``runs_per_sample`` back-to-back runs (chosen automatically so one sample lasts about
``target_sample_s``: this averages out timer resolution and sub-millisecond scheduler noise), until at least
``repeats`` samples and ``min_time_s`` seconds are collected and the 95 % interval of the median is within
``+/- ci_target`` of it (or ``max_time_s`` has passed): :mod:`profilers.timing` documents the protocol, and every
result records it (``protocol``) with its quantiles every 5 % and the median's interval. The figures are the median, 10th/90th percentiles,
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

ONNX Runtime: the model is exported with ``torch.onnx.export`` (by default the dynamo exporter, ``external_data=False``;
the TorchScript exporter ``dynamo=False`` if the dynamo export fails; ``exporter="torchscript"`` asks for the
TorchScript exporter directly, ~5x faster, as the search does; recorded in ``settings["exporter"]``) and run
in an ``InferenceSession`` on ``CPUExecutionProvider`` (``CUDAExecutionProvider`` when ``device="cuda"``).
``session.run`` is synchronous and returns host arrays, so a wall clock brackets it; on CUDA that includes the
host-device copies of inputs and outputs.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from profilers.onnx import export_onnx, onnx_session
from profilers.threads import torch_threads
from profilers.timing import LatencyResult, collect_samples, device_name, latency_from_samples, load_average

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence


__all__ = [
    "BACKENDS",
    "DTYPES",
    "check_device",
    "check_dtype",
    "check_positive",
    "check_protocol",
    "check_request",
    "measure_latency",
    "prepared_model",
    "protocol_options",
]

BACKENDS: tuple[str, ...] = ("eager", "onnxruntime")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def check_device(device: str, backend: str) -> torch.device:
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


def check_dtype(dtype: str | torch.dtype, backend: str) -> tuple[str, torch.dtype]:
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
def prepared_model(model: nn.Module, dev: torch.device, dtype: torch.dtype) -> Iterator[nn.Module]:
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


def _onnxruntime_block(
    model: nn.Module, x: torch.Tensor, dev: torch.device, threads: int, settings: dict[str, Any], exporter: str = "auto"
) -> Callable[[int], float]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="nas-latency-") as folder:
        info = export_onnx(model, x, Path(folder) / "model.onnx", dynamic_batch=False, exporter=exporter, check=False)
        session = onnx_session(info.path, threads, device=str(dev))
    options = session.get_session_options()
    settings.update(
        {
            "exporter": info.exporter,
            "onnxruntime_version": ort.__version__,
            "execution_provider": session.get_providers()[0],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": int(options.inter_op_num_threads),
            "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
            "execution_mode": str(options.execution_mode).split(".")[-1],
            "export_s": info.export_s,
        }
    )
    if info.dynamo_error:
        settings["dynamo_export_error"] = info.dynamo_error
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}

    def run_block(k: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            session.run(None, feed)
        return (time.perf_counter_ns() - t0) / 1e6

    return run_block


def check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_request(
    model: object, input_shape: Sequence[int], device: str, backend: str, dtype: str | torch.dtype
) -> tuple[torch.device, str, torch.dtype, tuple[int, ...]]:
    """Validate what every measurement takes: a module, a per-sample input shape, a device, backend and dtype."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dev = check_device(device, backend)
    dtype_name, torch_dtype = check_dtype(dtype, backend)
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
    warmup_time_s: float = 0.1,
    repeats: int = 30,
    min_time_s: float = 0.1,
    runs_per_sample: int | None = None,
    target_sample_s: float = 0.001,
    ci_target: float = 0.01,
    max_time_s: float = 2.0,
    threads: int | None = None,
    noisy_threshold: float = 0.1,
    cudnn_benchmark: bool | None = None,
    allow_tf32: bool | None = None,
    seed: int = 0,
    exporter: str = "auto",
) -> LatencyResult:
    """Measure the latency of one forward pass of ``model`` on a ``(batch_size, *input_shape)`` input.

    ``input_shape`` is the shape of one sample, without the batch dimension (e.g. ``(3, 224, 224)``).
    ``threads`` defaults to the current ``torch.get_num_threads()``; it is set for the measurement and restored.
    ``cudnn_benchmark`` and ``allow_tf32`` (CUDA only) are left as they are when ``None``. The input is drawn
    from a generator seeded with ``seed``. The caller's model is not moved, cast or left in eval mode.
    """
    dev, dtype_name, torch_dtype, shape = check_request(model, input_shape, device, backend, dtype)
    check_positive("batch_size", batch_size)
    check_positive("repeats", repeats)
    check_positive("warmup", warmup, minimum=0)
    if runs_per_sample is not None:
        check_positive("runs_per_sample", runs_per_sample)
    if threads is None:
        threads = torch.get_num_threads()
    check_positive("threads", threads)
    if min_time_s < 0 or warmup_time_s < 0 or target_sample_s <= 0:
        raise ValueError(
            "min_time_s and warmup_time_s must be >= 0 and target_sample_s > 0, got "
            f"{min_time_s}, {warmup_time_s}, {target_sample_s}"
        )
    check_protocol(ci_target, max_time_s)

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *shape), generator=generator).to(device=dev, dtype=torch_dtype)
    settings: dict[str, Any] = {
        "torch_version": torch.__version__,
        "interop_threads": torch.get_num_interop_threads(),
        "timer": "cuda_event" if dev.type == "cuda" and backend == "eager" else "perf_counter",
        "load_average_1min": load_average(),
    }
    cuda_flags: contextlib.AbstractContextManager[dict[str, Any]] = (
        _cuda_flags(cudnn_benchmark, allow_tf32) if dev.type == "cuda" else contextlib.nullcontext({})
    )
    # CUDA events are recorded on the current stream of the current device: make it the measured device.
    device_context = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with (
        torch_threads(threads),
        device_context,
        cuda_flags as flag_settings,
        prepared_model(model, dev, torch_dtype) as ready,
        torch.inference_mode(),
    ):
        settings.update(flag_settings or {})
        if backend == "onnxruntime":
            with torch.inference_mode(False), torch.no_grad():
                run_block = _onnxruntime_block(ready, x.clone(), dev, threads, settings, exporter)
        elif dev.type == "cuda":
            run_block = _eager_cuda_block(ready, x)
        else:
            run_block = _eager_cpu_block(ready, x)
        samples, block = collect_samples(
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
        protocol=protocol_options(
            warmup=warmup, warmup_time_s=warmup_time_s, repeats=repeats, min_time_s=min_time_s,
            target_sample_s=target_sample_s, ci_target=ci_target, max_time_s=max_time_s,
        ),
    )


def check_protocol(ci_target: float, max_time_s: float) -> None:
    if not 0 <= ci_target < 1 or max_time_s < 0:
        raise ValueError(f"ci_target must be in [0, 1) and max_time_s >= 0, got {ci_target!r} and {max_time_s!r}")


def protocol_options(**options: float) -> dict[str, Any]:
    return {k: (int(v) if k in ("warmup", "repeats") else float(v)) for k, v in options.items()}
