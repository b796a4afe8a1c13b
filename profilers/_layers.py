"""Per-operator layer records of any ``nn.Module``, collected by running it once.

The model runs once in eval mode under ``torch.no_grad`` inside a ``TorchDispatchMode``, which sees every aten
operator actually executed (convolutions, matrix products, batch norm, activations, additions, concatenations,
copies, pooling ...). Forward pre/post hooks on every submodule keep a stack of module paths, so each operator is
attributed to the innermost module running it.

Counting rules (one record per executed operator; views are not recorded):

* **Views** (``view``, ``reshape`` of a contiguous tensor, ``transpose``, ``permute``, ``split``, ``chunk``,
  ``slice``, ``flatten``, ``expand`` ...) move no memory and cost nothing: no record. A ``reshape`` or
  ``contiguous`` that has to copy shows up as a ``clone`` (kind ``"copy"``): channel shuffle
  (view - transpose - contiguous - view) is exactly one copy.
* ``memory_access_bytes`` (ShuffleNetV2's memory access cost) = bytes of every tensor the operator reads
  (feature maps, weights, biases and buffers such as batch norm's running statistics) + bytes of the primary
  output it writes. Broadcast inputs count their distinct elements only. Secondary outputs (max pooling's
  indices, batch/layer norm's saved statistics) are not counted: they are bookkeeping, not feature maps.
  An in-place operator (``relu_``) reads and writes its tensor; ``copy_`` reads its source and writes its
  destination. For a 1x1 convolution with ``c1`` in and ``c2`` out channels on an ``h x w`` map (batch 1, no
  bias) this is exactly ``(h*w*(c1 + c2) + c1*c2/groups) * element_size``.
* **Batch norm in eval mode** reads its input, its weight, bias, running mean and running variance (``4*C``
  values) and writes its output. ``params`` counts only the parameters (weight and bias, ``2*C``), as
  ``count_params`` does; the two running buffers are included in ``memory_access_bytes`` because they are read.
* ``mult_adds`` follows fvcore (one multiply-add = one unit): convolution ``batch * prod(weight) * prod(output
  spatial)`` (input spatial for a transposed convolution), matrix products ``M*K*N`` per batch, batch norm
  ``numel * 2`` in eval with affine parameters (``* 1`` without; training-style normalisation ``* 5`` / ``* 4``),
  layer and group norm ``numel * 5`` (``* 4`` without affine), fused attention ``batch * L * S * (E + Ev)``
  (``nn.MultiheadAttention``'s fused kernel adds its four projections). Bias additions are folded into the accumulation
  and not counted (as fvcore does).
* ``elementwise_ops`` (the work fvcore skips, guideline G4): activations, additions, multiplications and other
  point-wise operators count one per output element; max/average pooling counts ``output elements * window
  size``; adaptive/global pooling, ``mean`` and other reductions count one per input element; softmax counts
  three per element (exponential, sum, division); upsampling counts one per output element (four for
  bilinear). Concatenations and copies count no element-wise work, only memory.
* Factory operators (``empty``, ``zeros`` ...) and operators without tensor inputs are not recorded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["LAYER_KINDS", "ConvInfo", "LayerRecord", "collect_layers"]

LAYER_KINDS: tuple[str, ...] = (
    "conv",
    "linear",
    "matmul",
    "batch_norm",
    "activation",
    "add",
    "mul",
    "concat",
    "copy",
    "pool",
    "softmax",
    "other",
)

_CONV_OPS = frozenset({"convolution", "_convolution", "convolution_overrideable", "mkldnn_convolution"})
_MATMUL_OPS = frozenset({"addmm", "mm", "bmm", "baddbmm", "addbmm", "addmv", "mv", "dot", "_addmm_activation"})
_BATCH_NORM_OPS = frozenset(
    {
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit_functional",
        "cudnn_batch_norm",
        "miopen_batch_norm",
        "_batch_norm_with_update",
        "_batch_norm_no_update",
    }
)
_NORM_OPS = frozenset({"native_layer_norm", "native_group_norm"})
_ACTIVATION_OPS = frozenset(
    {
        "relu",
        "relu_",
        "relu6",
        "hardtanh",
        "hardtanh_",
        "hardswish",
        "hardswish_",
        "hardsigmoid",
        "hardsigmoid_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "tanh_",
        "silu",
        "silu_",
        "gelu",
        "gelu_",
        "elu",
        "elu_",
        "selu",
        "selu_",
        "celu",
        "celu_",
        "leaky_relu",
        "leaky_relu_",
        "mish",
        "mish_",
        "softplus",
        "prelu",
        "_prelu_kernel",
        "threshold",
        "threshold_",
        "log_sigmoid_forward",
        "glu",
    }
)
_ADD_OPS = frozenset({"add", "add_", "sub", "sub_", "rsub"})
_MUL_OPS = frozenset({"mul", "mul_", "div", "div_"})
_CONCAT_OPS = frozenset({"cat", "stack", "concat", "concatenate"})
_COPY_OPS = frozenset({"clone", "copy_", "_to_copy", "copy", "contiguous"})
_WINDOW_POOL_OPS = frozenset(
    {
        "max_pool1d",
        "max_pool2d",
        "max_pool3d",
        "max_pool1d_with_indices",
        "max_pool2d_with_indices",
        "max_pool3d_with_indices",
        "mkldnn_max_pool2d",
        "avg_pool1d",
        "avg_pool2d",
        "avg_pool3d",
    }
)
_GLOBAL_POOL_OPS = frozenset(
    {
        "adaptive_avg_pool1d",
        "_adaptive_avg_pool2d",
        "_adaptive_avg_pool3d",
        "adaptive_max_pool1d",
        "adaptive_max_pool2d",
        "adaptive_max_pool3d",
        "mean",
    }
)
_ATTENTION_OPS = frozenset(
    {
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    }
)
_SOFTMAX_OPS = frozenset({"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"})
_UPSAMPLE_OPS = frozenset(
    {
        "upsample_nearest1d",
        "upsample_nearest2d",
        "upsample_nearest3d",
        "_upsample_nearest_exact2d",
        "upsample_bilinear2d",
        "_upsample_bilinear2d_aa",
        "upsample_linear1d",
        "upsample_bicubic2d",
        "upsample_trilinear3d",
    }
)
# Operators that return fresh but meaningless or aliasing storage: nothing is computed or moved.
_SKIPPED_OPS = frozenset(
    {
        "_unsafe_view",
        "_reshape_alias",
        "detach",
        "detach_",
        "_local_scalar_dense",
        "empty_like",
        "new_empty",
        "new_empty_strided",
        "empty_strided",
        "resize_",
        "set_",
        "lift_fresh",
        "lift_fresh_copy",
        "alias",
    }
)


@dataclass(frozen=True)
class ConvInfo:
    """Geometry of one convolution; ``h`` and ``w`` are the output's last two spatial sizes (``h = 1`` in 1-D)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    h: int
    w: int
    transposed: bool = False

    @property
    def depthwise(self) -> bool:
        """True when every input channel has its own filter group (``groups == in_channels > 1``)."""
        return self.groups == self.in_channels and self.groups > 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvInfo:
        return cls(
            in_channels=int(data["in_channels"]),
            out_channels=int(data["out_channels"]),
            kernel_size=tuple(int(v) for v in data["kernel_size"]),
            stride=tuple(int(v) for v in data["stride"]),
            padding=tuple(int(v) for v in data["padding"]),
            dilation=tuple(int(v) for v in data["dilation"]),
            groups=int(data["groups"]),
            h=int(data["h"]),
            w=int(data["w"]),
            transposed=bool(data.get("transposed", False)),
        )


@dataclass(frozen=True)
class LayerRecord:
    """One executed aten operator with its costs (see the module docstring for the counting rules).

    ``input_shapes`` lists the feature-map inputs only (tensors that are not parameters or buffers of the
    model), in argument order; weights are summarised by ``params`` and ``conv``.
    """

    name: str
    kind: str
    op: str
    module_type: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    params: int
    mult_adds: int
    elementwise_ops: int
    memory_access_bytes: int
    conv: ConvInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        data["output_shape"] = list(self.output_shape)
        data["conv"] = None if self.conv is None else self.conv.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerRecord:
        conv = data.get("conv")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            op=str(data["op"]),
            module_type=str(data["module_type"]),
            input_shapes=tuple(tuple(int(v) for v in s) for s in data["input_shapes"]),
            output_shape=tuple(int(v) for v in data["output_shape"]),
            params=int(data["params"]),
            mult_adds=int(data["mult_adds"]),
            elementwise_ops=int(data["elementwise_ops"]),
            memory_access_bytes=int(data["memory_access_bytes"]),
            conv=None if conv is None else ConvInfo.from_dict(conv),
        )


def _is_view_op(func: torch._ops.OpOverload) -> bool:
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t``: broadcast (stride 0) dimensions count once."""
    count = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride != 0:
            count *= size
        elif size == 0:
            count = 0
    return count * t.element_size()


def _storage_key(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return 0


def attention_mult_adds(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """Mult-adds of ``softmax(q @ k^T) @ v``: ``batch * L * S * (E + Ev)`` for q ``(..., L, E)``, k ``(..., S, E)``,
    v ``(..., S, Ev)``."""
    batch = math.prod(q_shape[:-2])
    return batch * int(q_shape[-2]) * int(k_shape[-2]) * (int(q_shape[-1]) + int(v_shape[-1]))


def multi_head_attention_mult_adds(q_shape: Sequence[int], k_shape: Sequence[int], embed_dim: int) -> int:
    """Mult-adds of ``nn.MultiheadAttention``'s fused kernel on batch-first ``(B, L, E)`` query, ``(B, S, E)`` key:
    query, key and value projections, attention over all heads, output projection."""
    batch, length, source = int(q_shape[0]), int(q_shape[1]), int(k_shape[1])
    projections = batch * (2 * length + 2 * source) * embed_dim * embed_dim
    return projections + batch * length * source * 2 * embed_dim


def _norm_mult_adds(numel: int, affine: bool, normalising_batch: bool) -> int:
    if normalising_batch:
        return numel * (5 if affine else 4)
    return numel * (2 if affine else 1)


class _LayerRecorder(TorchDispatchMode):
    """Dispatch mode turning every executed, non-view aten operator into a :class:`LayerRecord`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.records: list[LayerRecord] = []
        self.module_stack: list[tuple[str, nn.Module]] = []
        self._parameter_storages: set[int] = set()
        self._state_storages: set[int] = set()
        for p in model.parameters():
            key = _storage_key(p)
            if key:
                self._parameter_storages.add(key)
                self._state_storages.add(key)
        for b in model.buffers():
            key = _storage_key(b)
            if key:
                self._state_storages.add(key)

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        short = func.overloadpacket.__name__
        if short in _SKIPPED_OPS or _is_view_op(func):
            return
        flat_args, _ = tree_flatten((args, kwargs))
        tensor_args = [a for a in flat_args if isinstance(a, torch.Tensor)]
        flat_out, _ = tree_flatten(out)
        outputs = [o for o in flat_out if isinstance(o, torch.Tensor)]
        if not tensor_args or not outputs:
            return
        primary = outputs[0]

        # copy_(dst, src): the destination is written, not read.
        read = tensor_args[1:] if short == "copy_" else tensor_args
        params = 0
        memory = _distinct_bytes(primary)
        input_shapes: list[tuple[int, ...]] = []
        for t in read:
            memory += _distinct_bytes(t)
            key = _storage_key(t)
            if key and key in self._parameter_storages:
                params += t.numel()
            if not (key and key in self._state_storages):
                input_shapes.append(tuple(int(s) for s in t.shape))

        kind, mult_adds, elementwise, conv = self._costs(func, short, args, tensor_args, primary, params)
        path, module = self.module_stack[-1] if self.module_stack else ("", None)
        is_leaf = module is not None and next(iter(module.children()), None) is None
        if path and is_leaf:
            name = path
        elif path:
            name = f"{path}/{short}"
        else:
            name = short
        self.records.append(
            LayerRecord(
                name=name,
                kind=kind,
                op=str(func),
                module_type="" if module is None else type(module).__name__,
                input_shapes=tuple(input_shapes),
                output_shape=tuple(int(s) for s in primary.shape),
                params=int(params),
                mult_adds=int(mult_adds),
                elementwise_ops=int(elementwise),
                memory_access_bytes=int(memory),
                conv=conv,
            )
        )

    @staticmethod
    def _costs(
        func: torch._ops.OpOverload,
        short: str,
        args: tuple[Any, ...],
        tensor_args: list[torch.Tensor],
        primary: torch.Tensor,
        params: int,
    ) -> tuple[str, int, int, ConvInfo | None]:
        """Kind, mult-adds, element-wise ops and convolution geometry of one operator."""
        first = tensor_args[0]
        if short in _CONV_OPS:
            x, weight = args[0], args[1]
            stride, padding, dilation, transposed, _, groups = args[3:9]
            spatial = tuple(x.shape[2:]) if transposed else tuple(primary.shape[2:])
            mult_adds = int(x.shape[0]) * weight.numel() * math.prod(spatial)
            out_spatial = tuple(int(s) for s in primary.shape[2:])
            h = out_spatial[-2] if len(out_spatial) >= 2 else 1
            w = out_spatial[-1] if out_spatial else 1
            conv = ConvInfo(
                in_channels=int(x.shape[1]),
                out_channels=int(primary.shape[1]),
                kernel_size=tuple(int(k) for k in weight.shape[2:]),
                stride=tuple(int(s) for s in stride),
                padding=tuple(int(p) for p in padding),
                dilation=tuple(int(d) for d in dilation),
                groups=int(groups),
                h=int(h),
                w=int(w),
                transposed=bool(transposed),
            )
            return "conv", mult_adds, 0, conv
        if short in _MATMUL_OPS:
            if short in {"addmm", "baddbmm", "addbmm", "addmv", "_addmm_activation"}:
                a, b = args[1], args[2]
            else:
                a, b = args[0], args[1]
            inner = int(a.shape[-1]) if a.dim() > 0 else 1
            if short == "addbmm":
                mult_adds = int(a.shape[0]) * int(a.shape[1]) * inner * int(b.shape[-1])
            else:
                mult_adds = primary.numel() * inner
            return ("linear" if params > 0 else "matmul"), mult_adds, 0, None
        if short in _BATCH_NORM_OPS:
            weight = args[1] if len(args) > 1 else None
            if short == "native_batch_norm" or short == "cudnn_batch_norm" or short == "miopen_batch_norm":
                normalising_batch = bool(args[5])
            elif short in {"_native_batch_norm_legit", "_native_batch_norm_legit_functional"}:
                normalising_batch = bool(args[5]) if len(args) > 5 and isinstance(args[5], bool) else True
            elif short == "_batch_norm_with_update":
                normalising_batch = True
            else:
                normalising_batch = False
            mult_adds = _norm_mult_adds(first.numel(), weight is not None, normalising_batch)
            return "batch_norm", mult_adds, 0, None
        if short in _NORM_OPS:
            weight_index = 2 if short == "native_layer_norm" else 1
            weight = args[weight_index] if len(args) > weight_index else None
            return "other", _norm_mult_adds(first.numel(), weight is not None, True), 0, None
        if short in _ACTIVATION_OPS:
            return "activation", 0, primary.numel(), None
        if short in _ADD_OPS:
            return "add", 0, primary.numel(), None
        if short in _MUL_OPS:
            return "mul", 0, primary.numel(), None
        if short in _CONCAT_OPS:
            return "concat", 0, 0, None
        if short in _COPY_OPS:
            return "copy", 0, 0, None
        if short in _WINDOW_POOL_OPS:
            kernel = args[1]
            spatial_dims = first.dim() - 2 if first.dim() >= 3 else 1
            if isinstance(kernel, int):
                window = kernel**spatial_dims
            else:
                sizes = [int(k) for k in kernel]
                window = math.prod(sizes) if len(sizes) == spatial_dims else sizes[0] ** spatial_dims
            return "pool", 0, primary.numel() * window, None
        if short in _GLOBAL_POOL_OPS:
            return "pool", 0, first.numel(), None
        if short in _ATTENTION_OPS:
            q, k, v = args[0], args[1], args[2]
            scores = math.prod(q.shape[:-1]) * int(k.shape[-2])
            return "matmul", attention_mult_adds(q.shape, k.shape, v.shape), 3 * scores, None
        if short == "_native_multi_head_attention":
            q, k, embed_dim, heads = args[0], args[1], int(args[3]), int(args[4])
            scores = int(q.shape[0]) * heads * int(q.shape[1]) * int(k.shape[1])
            kind = "linear" if params > 0 else "matmul"
            return kind, multi_head_attention_mult_adds(q.shape, k.shape, embed_dim), 3 * scores, None
        if short in _SOFTMAX_OPS:
            return "softmax", 0, 3 * first.numel(), None
        if short in _UPSAMPLE_OPS:
            scale = 4 if "linear" in short else 1
            return "other", 0, primary.numel() * scale, None
        if torch.Tag.reduction in func.tags:
            return "other", 0, first.numel(), None
        if torch.Tag.pointwise in func.tags:
            return "other", 0, primary.numel(), None
        return "other", 0, 0, None


def _module_hooks(recorder: _LayerRecorder, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    handles = []

    def make_pre(path: str) -> Callable[[nn.Module, Any], None]:
        def pre(module: nn.Module, _inputs: Any) -> None:
            recorder.module_stack.append((path, module))

        return pre

    def post(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        if recorder.module_stack:
            recorder.module_stack.pop()

    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(make_pre(path)))
        handles.append(module.register_forward_hook(post))
    return handles


def _modes(model: nn.Module) -> Iterator[tuple[nn.Module, bool]]:
    for module in model.modules():
        yield module, module.training


def collect_layers(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[LayerRecord]:
    """Run ``model`` once (eval mode, no grad) on ``inputs`` and return one record per executed operator.

    Works on any ``nn.Module``; the training flags of every submodule are restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(inputs, torch.Tensor):
        args: tuple[torch.Tensor, ...] = (inputs,)
    elif isinstance(inputs, tuple) and all(isinstance(t, torch.Tensor) for t in inputs):
        args = inputs
    else:
        raise ValueError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {type(inputs).__name__}")
    saved_modes = list(_modes(model))
    recorder = _LayerRecorder(model)
    handles = _module_hooks(recorder, model)
    try:
        model.eval()
        with torch.no_grad(), recorder:
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in saved_modes:
            module.training = mode
    return recorder.records
