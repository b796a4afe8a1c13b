"""The check of an exported ONNX file (written by :func:`profilers.export_onnx`) in ONNX Runtime.

Verification (:func:`verify_onnx`): an ONNX Runtime session on ``CPUExecutionProvider`` runs the verification batch
and its first sample alone (the dynamic batch axis in use); the largest absolute difference from the PyTorch output
must be at most ``tolerance = atol * max(1, max |PyTorch output|)`` (float32 rounding grows with the size of the
values: logits of 30 may differ by more than 1e-4 with nothing wrong in the file), and with labels the accuracy
of both must be equal. Latency of ONNX Runtime and of PyTorch eager, at batch 1 and at the verification batch,
with the same thread count, is measured with the method of :mod:`profilers.latency` (its warm-up, sampling and
statistics).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from profilers import (
    LatencyResult,
    check_model_and_batch,
    eval_mode,
    measure_latency,
    model_device,
    onnx_session,
    time_onnx_session,
    timing_options,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


__all__ = ["ExportCheck", "verify_onnx"]


@dataclass(frozen=True)
class ExportCheck:
    """ONNX Runtime against PyTorch on one batch. ``passed`` is the verdict; the rest says why."""

    path: str
    batch_size: int
    atol: float
    tolerance: float  # atol * max(1, largest |PyTorch output|): what parity allows
    max_abs_diff: float  # on the whole batch
    max_abs_diff_batch1: float  # the first sample alone: the dynamic batch axis at work
    parity_ok: bool  # both differences within the tolerance, output shapes equal
    predictions_equal: bool  # arg-max class of every sample agrees
    prediction_mismatches: int
    accuracy_torch: float | None  # None without labels
    accuracy_onnx: float | None
    accuracy_equal: bool | None
    execution_provider: str
    threads: int
    onnxruntime_version: str
    latency: dict[str, LatencyResult] = field(default_factory=dict)  # "onnxruntime_batch1", "eager_batch5", ...

    @property
    def passed(self) -> bool:
        return self.parity_ok and self.accuracy_equal is not False

    def failures(self) -> list[str]:
        """Why the check did not pass, one sentence each (empty when it passed)."""
        reasons = []
        if not self.parity_ok:
            reasons.append(
                f"ONNX Runtime output differs from PyTorch by {self.max_abs_diff:.3g} (batch {self.batch_size}) and "
                f"{self.max_abs_diff_batch1:.3g} (batch 1); allowed at most {self.tolerance:.3g} "
                f"(atol {self.atol:g} x the largest |output|, at least 1)"
            )
        if self.accuracy_equal is False:
            reasons.append(f"accuracy differs: PyTorch {self.accuracy_torch}, ONNX Runtime {self.accuracy_onnx}")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "latency"}
        data["passed"] = self.passed
        data["latency"] = {key: result.to_dict() for key, result in self.latency.items()}
        return data


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    atol: float = 1e-4,
    latency: bool = True,
    threads: int | None = None,
    latency_options: Mapping[str, Any] | None = None,
    latency_batch_sizes: Sequence[int] | None = None,
    strict: bool = False,
) -> ExportCheck:
    """Check the ONNX file ``path`` against ``model`` on the batch ``inputs`` (and ``labels``, class indices).

    ``threads`` (default: ``torch.get_num_threads()``) is used by ONNX Runtime and by the PyTorch timing alike;
    ``latency_options`` (any of :data:`TIMING_OPTIONS`, default ``measure_latency``'s) apply to both backends.
    Latency is measured at ``latency_batch_sizes`` (default: 1 and the batch's size).
    A failed check is flagged in the result (``passed`` False, ``failures()`` says why); with ``strict=True`` it
    raises ``RuntimeError`` instead.
    """
    import onnxruntime as ort

    check_model_and_batch(model, inputs, "inputs")
    batch_size = int(inputs.shape[0])
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.shape != (batch_size,)
    ):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape ({batch_size},) (class indices), got {shape}")
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol > 0):
        raise ValueError(f"atol must be a finite number > 0, got {atol!r}")
    threads = torch.get_num_threads() if threads is None else threads
    timing = timing_options(latency_options)
    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name

    x = inputs.detach().to("cpu", torch.float32).contiguous()
    with eval_mode(model), torch.inference_mode():
        reference = model(x.to(model_device(model))).float().cpu().numpy()
    full = session.run(None, {input_name: x.numpy()})[0]
    single = session.run(None, {input_name: x[:1].numpy()})[0]
    diff = _max_abs_diff(full, reference)
    diff1 = _max_abs_diff(single, reference[:1])
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    tolerance = float(atol) * max(1.0, scale) if math.isfinite(scale) else float(atol)
    parity_ok = diff <= tolerance and diff1 <= tolerance

    same_shape = full.shape == reference.shape and full.ndim == 2
    mismatches = int(np.sum(full.argmax(1) != reference.argmax(1))) if same_shape else batch_size
    accuracy_torch = accuracy_onnx = None
    accuracy_equal = None
    if labels is not None:
        truth = labels.detach().cpu().numpy()
        accuracy_torch = float(np.mean(reference.argmax(1) == truth)) if reference.ndim == 2 else math.nan
        accuracy_onnx = float(np.mean(full.argmax(1) == truth)) if full.ndim == 2 else math.nan
        accuracy_equal = accuracy_torch == accuracy_onnx

    timings: dict[str, LatencyResult] = {}
    if latency:
        shape = tuple(int(s) for s in x.shape[1:])
        sizes = sorted(set(latency_batch_sizes or (1, batch_size)))
        if sizes[0] < 1 or sizes[-1] > batch_size:
            raise ValueError(f"latency_batch_sizes must lie in [1, {batch_size}], got {sizes}")
        for size in sizes:
            timings[f"onnxruntime_batch{size}"] = time_onnx_session(session, x[:size].numpy(), options=timing)
            timings[f"eager_batch{size}"] = measure_latency(
                model, shape, batch_size=size, backend="eager", threads=threads, **timing
            )

    check = ExportCheck(
        path=str(path),
        batch_size=batch_size,
        atol=float(atol),
        tolerance=tolerance,
        max_abs_diff=diff,
        max_abs_diff_batch1=diff1,
        parity_ok=parity_ok,
        predictions_equal=mismatches == 0,
        prediction_mismatches=mismatches,
        accuracy_torch=accuracy_torch,
        accuracy_onnx=accuracy_onnx,
        accuracy_equal=accuracy_equal,
        execution_provider=session.get_providers()[0],
        threads=threads,
        onnxruntime_version=ort.__version__,
        latency=timings,
    )
    if strict and not check.passed:
        raise RuntimeError(f"ONNX check of {path} failed: " + "; ".join(check.failures()))
    return check
