"""What one executed aten operator costs: its kind, mult-adds, element-wise work and convolution geometry.

Counting rules (one multiply-add = one unit, as published tables and torchvision count "FLOPs"):

* ``mult_adds`` are the multiply-accumulates of convolutions, linear layers and matrix products only, as fvcore
  counts them: convolution ``batch * prod(weight) * prod(output spatial)`` (input spatial for a transposed
  convolution), matrix products ``M*K*N`` per batch, fused attention ``batch * L * S * (E + Ev)``
  (``nn.MultiheadAttention``'s fused kernel adds its four projections). Bias additions are folded into the
  accumulation and not counted (as fvcore does).
* ``elementwise_ops`` is every other piece of arithmetic (the work fvcore's mult-adds leave out, guideline G4):
  activations, additions, multiplications and other point-wise operators count one per output element; max/average
  pooling counts ``output elements * window size``; adaptive/global pooling, ``mean`` and other reductions count
  one per input element; softmax counts three per element (exponential, sum, division); upsampling counts one per
  output element (four for bilinear). Normalisations count what fvcore's handlers would have put into its total:
  batch norm ``numel * 2`` in eval with affine parameters (``* 1`` without; training-style normalisation ``* 5`` /
  ``* 4``), layer and group norm ``numel * 5`` (``* 4`` without affine). Concatenations and copies count no
  element-wise work, only memory.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from profilers.layers._operators import (
    ACTIVATION_OPS,
    ADD_OPS,
    ATTENTION_OPS,
    BATCH_NORM_OPS,
    CONCAT_OPS,
    CONV_OPS,
    COPY_OPS,
    GLOBAL_POOL_OPS,
    MATMUL_OPS,
    MUL_OPS,
    NORM_OPS,
    SOFTMAX_OPS,
    UPSAMPLE_OPS,
    WINDOW_POOL_OPS,
)
from profilers.layers._records import ConvInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["attention_mult_adds", "multi_head_attention_mult_adds", "normalisation_work", "operator_costs"]

# (kind, mult_adds, elementwise_ops, convolution geometry) of one operator
Costs = tuple[str, int, int, ConvInfo | None]


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


def normalisation_work(numel: int, affine: bool, normalising_batch: bool) -> int:
    """Element-wise work of a normalisation of ``numel`` elements: the figure of fvcore's norm handlers.

    Normalising with statistics of the batch itself (training-style batch norm, layer, group and instance norm)
    costs ``5`` per element with affine parameters, ``4`` without; applying stored statistics (batch norm in eval)
    costs ``2`` and ``1``.
    """
    if normalising_batch:
        return numel * (5 if affine else 4)
    return numel * (2 if affine else 1)


def _conv_costs(args: tuple[Any, ...], primary: torch.Tensor) -> Costs:
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


def _matmul_costs(short: str, args: tuple[Any, ...], primary: torch.Tensor, params: int) -> Costs:
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


def _batch_norm_costs(short: str, args: tuple[Any, ...], first: torch.Tensor) -> Costs:
    weight = args[1] if len(args) > 1 else None
    if short in {"native_batch_norm", "cudnn_batch_norm", "miopen_batch_norm"}:
        normalising_batch = bool(args[5])
    elif short in {"_native_batch_norm_legit", "_native_batch_norm_legit_functional"}:
        normalising_batch = bool(args[5]) if len(args) > 5 and isinstance(args[5], bool) else True
    else:
        normalising_batch = short == "_batch_norm_with_update"
    return "batch_norm", 0, normalisation_work(first.numel(), weight is not None, normalising_batch), None


def _window_pool_costs(args: tuple[Any, ...], first: torch.Tensor, primary: torch.Tensor) -> Costs:
    kernel = args[1]
    spatial_dims = first.dim() - 2 if first.dim() >= 3 else 1
    if isinstance(kernel, int):
        window = kernel**spatial_dims
    else:
        sizes = [int(k) for k in kernel]
        window = math.prod(sizes) if len(sizes) == spatial_dims else sizes[0] ** spatial_dims
    return "pool", 0, primary.numel() * window, None


def operator_costs(
    func: torch._ops.OpOverload,
    args: tuple[Any, ...],
    tensor_args: list[torch.Tensor],
    primary: torch.Tensor,
    params: int,
) -> Costs:
    """Kind, mult-adds, element-wise ops and convolution geometry of one executed operator.

    ``args`` are the operator's positional arguments, ``tensor_args`` every tensor among its arguments (at least
    one), ``primary`` its first output tensor and ``params`` the parameter elements it reads.
    """
    short = func.overloadpacket.__name__
    first = tensor_args[0]
    if short in CONV_OPS:
        return _conv_costs(args, primary)
    if short in MATMUL_OPS:
        return _matmul_costs(short, args, primary, params)
    if short in BATCH_NORM_OPS:
        return _batch_norm_costs(short, args, first)
    if short in NORM_OPS:
        weight_index = 2 if short == "native_layer_norm" else 1
        weight = args[weight_index] if len(args) > weight_index else None
        return "other", 0, normalisation_work(first.numel(), weight is not None, True), None
    if short in ACTIVATION_OPS:
        return "activation", 0, primary.numel(), None
    if short in ADD_OPS:
        return "add", 0, primary.numel(), None
    if short in MUL_OPS:
        return "mul", 0, primary.numel(), None
    if short in CONCAT_OPS:
        return "concat", 0, 0, None
    if short in COPY_OPS:
        return "copy", 0, 0, None
    if short in WINDOW_POOL_OPS:
        return _window_pool_costs(args, first, primary)
    if short in GLOBAL_POOL_OPS:
        return "pool", 0, first.numel(), None
    if short in ATTENTION_OPS:
        q, k, v = args[0], args[1], args[2]
        scores = math.prod(q.shape[:-1]) * int(k.shape[-2])
        return "matmul", attention_mult_adds(q.shape, k.shape, v.shape), 3 * scores, None
    if short == "_native_multi_head_attention":
        q, k, embed_dim, heads = args[0], args[1], int(args[3]), int(args[4])
        scores = int(q.shape[0]) * heads * int(q.shape[1]) * int(k.shape[1])
        kind = "linear" if params > 0 else "matmul"
        return kind, multi_head_attention_mult_adds(q.shape, k.shape, embed_dim), 3 * scores, None
    if short in SOFTMAX_OPS:
        return "softmax", 0, 3 * first.numel(), None
    if short in UPSAMPLE_OPS:
        scale = 4 if "linear" in short else 1
        return "other", 0, primary.numel() * scale, None
    if torch.Tag.reduction in func.tags:
        return "other", 0, first.numel(), None
    if torch.Tag.pointwise in func.tags:
        return "other", 0, primary.numel(), None
    return "other", 0, 0, None
