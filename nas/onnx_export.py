"""ONNX export of a static model (the search's winner) and its check in ONNX Runtime.

Export (:func:`export_onnx`): ``torch.onnx.export`` with the dynamo exporter (``torch.export`` capture, onnxscript
translation), ``external_data=False`` so one ``.onnx`` file holds graph and weights, input ``"input"``, output
``"logits"`` and, by default, a symbolic batch axis (``dynamic_shapes`` with ``torch.export.Dim("batch", min=1)``).
If the dynamo path fails for a model (capture, translation, or any check below), the TorchScript exporter
(``dynamo=False``, batch axis through ``dynamic_axes``) is tried; the exporter used and the reason for the fallback
are recorded. Checks on the written file: ``onnx.checker.check_model(full_check=True)`` (with shape inference), the
input and output names, the batch axis symbolic when asked for, and no tensor stored outside the file.

Verification (:func:`verify_onnx`): an ONNX Runtime session on ``CPUExecutionProvider`` runs the verification batch
and its first sample alone (the dynamic batch axis in use); the largest absolute difference from the PyTorch output
must be at most ``atol``, and with labels the accuracy of both must be equal. Latency of ONNX Runtime and of PyTorch
eager, at batch 1 and at the verification batch, with the same thread count, is measured with the method of
:mod:`profilers.latency` (its warm-up, sampling and statistics).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from profilers.latency import LatencyResult, collect_samples, cpu_name, latency_from_samples, measure_latency

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import onnx
    import onnxruntime as ort

__all__ = [
    "BATCH_DIM",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "TIMING_OPTIONS",
    "ExportCheck",
    "ExportInfo",
    "export_onnx",
    "onnx_session",
    "time_onnx_session",
    "verify_onnx",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"


@dataclass(frozen=True)
class ExportInfo:
    """What :func:`export_onnx` wrote and how. Shapes as in the graph: a symbolic axis is its name."""

    path: str
    exporter: str  # "dynamo" or "torchscript"
    dynamo_error: str  # why the dynamo export was not used; "" when it was
    opset: int
    dynamic_batch: bool
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    file_bytes: int
    export_s: float
    torch_version: str
    onnx_version: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["output_shape"] = list(self.output_shape)
        return data


@dataclass(frozen=True)
class ExportCheck:
    """ONNX Runtime against PyTorch on one batch. ``passed`` is the verdict; the rest says why."""

    path: str
    batch_size: int
    atol: float
    max_abs_diff: float  # on the whole batch
    max_abs_diff_batch1: float  # the first sample alone: the dynamic batch axis at work
    parity_ok: bool  # both differences within atol, output shapes equal
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
                f"{self.max_abs_diff_batch1:.3g} (batch 1); allowed at most {self.atol:g}"
            )
        if self.accuracy_equal is False:
            reasons.append(f"accuracy differs: PyTorch {self.accuracy_torch}, ONNX Runtime {self.accuracy_onnx}")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "latency"}
        data["passed"] = self.passed
        data["latency"] = {key: result.to_dict() for key, result in self.latency.items()}
        return data


# --------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode; every submodule's training flag is restored afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, mode in saved:
            module.training = mode


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_model_and_batch(model: object, batch: object, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(batch, torch.Tensor) or batch.ndim < 2 or batch.shape[0] < 1 or not batch.is_floating_point():
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"{name} must be a floating tensor (batch, ...) with batch >= 1, got {shape}")


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool) -> None:
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic_batch else None
    # The exporter warns that torchvision's operators are not registered: they are not used here.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    finally:
        registration.setLevel(level)


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool) -> None:
    dynamic_axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamo=False,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        verbose=False,
    )


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in ``graph``: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    return tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in value.type.tensor_type.shape.dim)


def _check_file(path: Path, side_file_existed: bool, dynamic_batch: bool) -> onnx.ModelProto:
    """Raise RuntimeError if the written file is not a valid one-file model with the agreed interface."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in _tensors(proto.graph) if uses_external_data(t)]
    side_file = Path(str(path) + ".data")
    if external or (side_file.exists() and not side_file_existed):
        raise RuntimeError(f"{path} is not self-contained: tensors stored outside it: {external[:5]} ({side_file})")
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or not outputs or outputs[0] != OUTPUT_NAME:
        raise RuntimeError(f"exported inputs {inputs} / outputs {outputs}; expected [{INPUT_NAME!r}] / {OUTPUT_NAME!r}")
    batch_axis = _dims(proto.graph.input[0])[0]
    if dynamic_batch and not isinstance(batch_axis, str):
        raise RuntimeError(f"the batch axis of {INPUT_NAME!r} was fixed to {batch_axis}, not left symbolic")
    return proto


class _Skipped(Exception):
    """Internal: the dynamo exporter was not asked for."""


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    exporter: str = "auto",
) -> ExportInfo:
    """Export ``model`` (in eval mode; its training flags are restored) to the single ONNX file ``path``.

    ``exporter``: "auto" (the default dynamo exporter, falling back to TorchScript when it fails), "dynamo" or
    "torchscript" (no fallback; the TorchScript exporter is ~10x faster, which the test suites use).

    ``example_input`` is one batch ``(batch, ...)`` on the model's device. Raises ``ValueError`` on bad arguments
    and ``RuntimeError`` (naming both reasons) when neither exporter gives a file that passes the checks.
    """
    import onnx

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    _check_model_and_batch(model, example_input, "example_input")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file path ending in .onnx, got the directory {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    side_file_existed = Path(str(path) + ".data").exists()
    example = example_input.detach().to(_model_device(model))

    start = time.perf_counter()
    requested, exporter, dynamo_error = exporter, "dynamo", ""
    with _eval_mode(model), warnings.catch_warnings():
        # The exporters' deprecation notices say nothing about this model; which exporter ran is recorded.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if requested == "torchscript":
                raise _Skipped("TorchScript exporter requested")
            _export_dynamo(model, example, path, dynamic_batch)
            proto = _check_file(path, side_file_existed, dynamic_batch)
        except Exception as exc:
            if requested == "dynamo":
                raise RuntimeError(f"ONNX export of {type(model).__name__} with the dynamo exporter failed: {exc}") from exc
            # The dynamo path fails in many ways; the fallback and its reason are recorded.
            if requested == "auto":
                dynamo_error = (f"{type(exc).__name__}: {exc}".strip().splitlines() or [""])[0][:500]
            exporter = "torchscript"
            try:
                _export_torchscript(model, example, path, dynamic_batch)
                proto = _check_file(path, side_file_existed, dynamic_batch)
            except Exception as fallback_exc:
                raise RuntimeError(
                    f"ONNX export of {type(model).__name__} failed with both exporters: dynamo: {dynamo_error}; "
                    f"torchscript: {type(fallback_exc).__name__}: {fallback_exc}"
                ) from fallback_exc
    export_s = time.perf_counter() - start

    opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return ExportInfo(
        path=str(path),
        exporter=exporter,
        dynamo_error=dynamo_error,
        opset=int(opsets[0]) if opsets else -1,
        dynamic_batch=dynamic_batch,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=_dims(proto.graph.input[0]),
        output_shape=_dims(proto.graph.output[0]),
        file_bytes=path.stat().st_size,
        export_s=export_s,
        torch_version=torch.__version__,
        onnx_version=onnx.__version__,
    )


# --------------------------------------------------------------------------------------------------
# ONNX Runtime: session, timing, verification
# --------------------------------------------------------------------------------------------------
def onnx_session(path: str | Path, threads: int) -> ort.InferenceSession:
    """A CPU session with the settings :mod:`profilers.latency` measures with (sequential, all optimisations)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ValueError(f"ONNX file {path} does not exist")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


# The timing options of measure_latency that also apply to an ONNX Runtime session.
TIMING_OPTIONS: tuple[str, ...] = (
    "warmup",
    "warmup_time_s",
    "repeats",
    "min_time_s",
    "target_sample_s",
    "noisy_threshold",
)


def _timing_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` over the defaults of ``measure_latency``, so both backends are timed the same way."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(TIMING_OPTIONS))
    if unknown:
        raise ValueError(f"unknown latency option(s) {unknown}; allowed: {', '.join(TIMING_OPTIONS)}")
    defaults = inspect.signature(measure_latency).parameters
    return {name: given.get(name, defaults[name].default) for name in TIMING_OPTIONS}


def time_onnx_session(
    session: ort.InferenceSession, batch: np.ndarray, *, options: Mapping[str, Any] | None = None
) -> LatencyResult:
    """Latency of ``session.run`` on ``batch``, with the warm-up, sampling and statistics of ``measure_latency``.

    ``profilers.latency.measure_latency`` times a model it exports itself; this times an existing session (the
    file that is shipped). ``options``: any of :data:`TIMING_OPTIONS`, defaulting to ``measure_latency``'s.
    The thread count is the session's ``intra_op_num_threads``.
    """
    import onnxruntime as ort

    opts = _timing_options(options)
    warmup, noisy_threshold = int(opts["warmup"]), float(opts["noisy_threshold"])
    if warmup < 0 or opts["repeats"] < 1 or opts["min_time_s"] < 0 or opts["warmup_time_s"] < 0:
        raise ValueError(f"latency options must be >= 0 (repeats >= 1), got {opts}")
    if opts["target_sample_s"] <= 0:
        raise ValueError(f"target_sample_s must be > 0, got {opts['target_sample_s']}")
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
        },
    )


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

    _check_model_and_batch(model, inputs, "inputs")
    batch_size = int(inputs.shape[0])
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.shape != (batch_size,)
    ):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape ({batch_size},) (class indices), got {shape}")
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol > 0):
        raise ValueError(f"atol must be a finite number > 0, got {atol!r}")
    threads = torch.get_num_threads() if threads is None else threads
    timing = _timing_options(latency_options)
    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name

    x = inputs.detach().to("cpu", torch.float32).contiguous()
    with _eval_mode(model), torch.inference_mode():
        reference = model(x.to(_model_device(model))).float().cpu().numpy()
    full = session.run(None, {input_name: x.numpy()})[0]
    single = session.run(None, {input_name: x[:1].numpy()})[0]
    diff = _max_abs_diff(full, reference)
    diff1 = _max_abs_diff(single, reference[:1])
    parity_ok = diff <= atol and diff1 <= atol

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
