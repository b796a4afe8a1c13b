"""The one ONNX exporter of the project, and the ONNX Runtime session every measurement and check uses.

Export (:func:`export_onnx`): ``torch.onnx.export`` with the dynamo exporter (``torch.export`` capture, onnxscript
translation), ``external_data=False`` so one ``.onnx`` file holds graph and weights, input ``"input"``, output
``"logits"`` and, by default, a symbolic batch axis (``dynamic_shapes`` with ``torch.export.Dim("batch", min=1)``).
If the dynamo path fails for a model (capture, translation, or any check below), the TorchScript exporter
(``dynamo=False``, batch axis through ``dynamic_axes``) is tried; the exporter used and the reason for the fallback
are recorded. Checks on the written file: ``onnx.checker.check_model(full_check=True)`` (with shape inference), the
input and output names, the batch axis symbolic when asked for, and no tensor stored outside the file.

The ONNX Runtime latency backend of :mod:`profilers.latency` times exactly what this exports, and ``nas export``
ships exactly this file: what is measured is what ships.

Session (:func:`onnx_session`): sequential execution, all graph optimisations, ``intra_op_num_threads = threads``
and ``inter_op_num_threads = 1``, on ``CPUExecutionProvider`` (``CUDAExecutionProvider`` first when the device is
``cuda``; ONNX Runtime's CUDA provider copies host inputs to the device and outputs back inside ``run``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Iterator

    import onnx
    import onnxruntime as ort

__all__ = [
    "BATCH_DIM",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportInfo",
    "check_model_and_batch",
    "eval_mode",
    "export_onnx",
    "model_device",
    "onnx_session",
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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode; every submodule's training flag is restored afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, mode in saved:
            module.training = mode


def model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_model_and_batch(model: object, batch: object, name: str) -> None:
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


def _check_file(path: Path, side_file_existed: bool, dynamic_batch: bool, full: bool = True) -> onnx.ModelProto:
    """Raise RuntimeError if the written file is not a valid one-file model with the agreed interface."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    if full:
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
    check: bool = True,
) -> ExportInfo:
    """Export ``model`` (in eval mode; its training flags are restored) to the single ONNX file ``path``.

    ``exporter``: "auto" (the default dynamo exporter, falling back to TorchScript when it fails), "dynamo" or
    "torchscript" (no fallback; the TorchScript exporter is ~10x faster, which the test suites and the search's
    latency timing use). ``check=False`` skips ``onnx.checker`` (the full check with shape inference): for a file
    that is only timed and thrown away; the interface (names, batch axis, one file) is still checked.

    ``example_input`` is one batch ``(batch, ...)`` on the model's device. Raises ``ValueError`` on bad arguments
    and ``RuntimeError`` (naming both reasons) when neither exporter gives a file that passes the checks.
    """
    import onnx

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    check_model_and_batch(model, example_input, "example_input")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path must be a file path ending in .onnx, got the directory {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    side_file_existed = Path(str(path) + ".data").exists()
    example = example_input.detach().to(model_device(model))

    start = time.perf_counter()
    requested, exporter, dynamo_error = exporter, "dynamo", ""
    with eval_mode(model), warnings.catch_warnings():
        # The exporters' deprecation notices say nothing about this model; which exporter ran is recorded.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            if requested == "torchscript":
                raise _Skipped("TorchScript exporter requested")
            _export_dynamo(model, example, path, dynamic_batch)
            proto = _check_file(path, side_file_existed, dynamic_batch, check)
        except Exception as exc:
            if requested == "dynamo":
                raise RuntimeError(f"ONNX export of {type(model).__name__} with the dynamo exporter failed: {exc}") from exc
            # The dynamo path fails in many ways; the fallback and its reason are recorded.
            if requested == "auto":
                dynamo_error = (f"{type(exc).__name__}: {exc}".strip().splitlines() or [""])[0][:500]
            exporter = "torchscript"
            try:
                _export_torchscript(model, example, path, dynamic_batch)
                proto = _check_file(path, side_file_existed, dynamic_batch, check)
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


def onnx_session(path: str | Path, threads: int, *, device: str = "cpu") -> ort.InferenceSession:
    """A session on ``path`` with the settings every measurement here uses (sequential, all optimisations)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise ValueError(f"ONNX file {path} does not exist")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    dev = torch.device(device)
    providers: list[Any] = ["CPUExecutionProvider"]
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(
                f"device={device!r} with ONNX Runtime needs CUDAExecutionProvider; available here: "
                f"{ort.get_available_providers()}"
            )
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": dev.index or 0}))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)
