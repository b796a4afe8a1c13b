"""Timing an ONNX Runtime session with the protocol of :func:`profilers.measure_latency`.

:func:`time_onnx_session` times an existing session (the file that ships); :func:`onnx_timer` exports a model
once and keeps its session, so that a search can time a candidate on ONNX Runtime without exporting it again.
The options (:data:`TIMING_OPTIONS`) default to ``measure_latency``'s, so both backends are timed the same way.
"""

from __future__ import annotations

import inspect
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from profilers.latency import (
    check_positive,
    check_protocol,
    check_request,
    measure_latency,
    prepared_model,
    protocol_options,
)
from profilers.onnx import export_onnx, onnx_session
from profilers.timing import LatencyResult, collect_samples, cpu_name, latency_from_samples, load_average

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np
    import onnxruntime as ort

__all__ = ["TIMING_OPTIONS", "OnnxTimer", "onnx_timer", "time_onnx_session", "timing_options"]


# The timing options of measure_latency that also apply to an ONNX Runtime session.
TIMING_OPTIONS: tuple[str, ...] = (
    "warmup",
    "warmup_time_s",
    "repeats",
    "min_time_s",
    "target_sample_s",
    "ci_target",
    "max_time_s",
    "noisy_threshold",
)


def timing_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` over the defaults of ``measure_latency``, so both backends are timed the same way."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(TIMING_OPTIONS))
    if unknown:
        raise ValueError(f"unknown latency option(s) {unknown}; allowed: {', '.join(TIMING_OPTIONS)}")
    defaults = inspect.signature(measure_latency).parameters
    return {name: given.get(name, defaults[name].default) for name in TIMING_OPTIONS}


def time_onnx_session(
    session: ort.InferenceSession,
    batch: np.ndarray,
    *,
    options: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> LatencyResult:
    """Latency of ``session.run`` on ``batch``, with the warm-up, sampling and statistics of ``measure_latency``.

    ``profilers.latency.measure_latency`` times a model it exports itself; this times an existing session (the
    file that is shipped). ``options``: any of :data:`TIMING_OPTIONS`, defaulting to ``measure_latency``'s.
    The thread count is the session's ``intra_op_num_threads``.
    """
    import onnxruntime as ort

    opts = timing_options(options)
    warmup, noisy_threshold = int(opts["warmup"]), float(opts["noisy_threshold"])
    if warmup < 0 or opts["repeats"] < 1 or opts["min_time_s"] < 0 or opts["warmup_time_s"] < 0:
        raise ValueError(f"latency options must be >= 0 (repeats >= 1), got {opts}")
    if opts["target_sample_s"] <= 0:
        raise ValueError(f"target_sample_s must be > 0, got {opts['target_sample_s']}")
    check_protocol(float(opts["ci_target"]), float(opts["max_time_s"]))
    feed = {session.get_inputs()[0].name: batch}
    threads = int(session.get_session_options().intra_op_num_threads)

    def run_block(k: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(k):
            session.run(None, feed)
        return (time.perf_counter_ns() - t0) / 1e6

    samples, block = collect_samples(
        run_block,
        warmup=warmup,
        warmup_time_s=float(opts["warmup_time_s"]),
        repeats=int(opts["repeats"]),
        min_time_s=float(opts["min_time_s"]),
        runs_per_sample=None,
        target_sample_s=float(opts["target_sample_s"]),
        ci_target=float(opts["ci_target"]),
        max_time_s=float(opts["max_time_s"]),
    )
    return latency_from_samples(
        samples,
        runs_per_sample=block,
        warmup=warmup,
        device="cpu",
        device_name=cpu_name(),
        backend="onnxruntime",
        threads=threads,
        batch_size=int(batch.shape[0]),
        dtype=str(batch.dtype),
        input_shape=tuple(int(s) for s in batch.shape[1:]),
        noisy_threshold=noisy_threshold,
        settings={
            "onnxruntime_version": ort.__version__,
            "execution_provider": session.get_providers()[0],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": int(session.get_session_options().inter_op_num_threads),
            "timer": "perf_counter",
            "source": "existing ONNX file",
            "load_average_1min": load_average(),
            **dict(settings or {}),
        },
        protocol=protocol_options(**{k: v for k, v in opts.items() if k != "noisy_threshold"}),
    )


@dataclass
class OnnxTimer:
    """A model exported for timing and its ONNX Runtime session: built once, timed when the caller chooses.

    The search builds it while other workers go on scoring (export and session set-up need no quiet machine)
    and times it under its exclusive timing lock (:meth:`time`).
    """

    session: ort.InferenceSession
    batch: np.ndarray
    settings: dict[str, Any]

    def time(self, options: Mapping[str, Any] | None = None) -> LatencyResult:
        """The latency of the session with the protocol of :mod:`profilers.timing` (``options``: TIMING_OPTIONS)."""
        return time_onnx_session(self.session, self.batch, options=options, settings=self.settings)


def onnx_timer(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str = "cpu",
    batch_size: int = 1,
    threads: int | None = None,
    exporter: str = "torchscript",
    seed: int = 0,
) -> OnnxTimer:
    """Export ``model`` (float32, fixed batch ``batch_size``) to a temporary file and open its timing session.

    ``exporter`` defaults to the TorchScript exporter: 10-20x faster than the dynamo exporter on this project's
    networks, and after ONNX Runtime's optimisations both graphs have the same nodes but for the head
    (``GlobalAveragePool``/``Flatten``/``MatMul`` against ``ReduceMean``/``Reshape``/``Gemm``, same count), checked on
    a random architecture of each space. The export check of ``nas export`` times the shipped dynamo file too.
    """
    import onnxruntime as ort

    dev, _, _, shape = check_request(model, input_shape, device, "onnxruntime", "float32")
    check_positive("batch_size", batch_size)
    if threads is None:
        threads = torch.get_num_threads()
    check_positive("threads", threads)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *shape), generator=generator)
    with (
        prepared_model(model, torch.device("cpu"), torch.float32) as ready,
        torch.no_grad(),
        tempfile.TemporaryDirectory(prefix="nas-latency-") as folder,
    ):
        info = export_onnx(ready, x, Path(folder) / "model.onnx", dynamic_batch=False, exporter=exporter, check=False)
        session = onnx_session(info.path, threads, device=str(dev))
    settings = {
        "exporter": info.exporter,
        "export_s": info.export_s,
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "source": "exported for timing",
    }
    return OnnxTimer(session=session, batch=x.numpy(), settings=settings)
