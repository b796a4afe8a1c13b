"""Static counts of a model: parameters, mult-adds (fvcore), element-wise ops and memory access (layer records).

``mult_adds`` comes from fvcore's ``FlopCountAnalysis``, which counts one fused multiply-add as one unit, restricted
to convolutions, linear layers and matrix products (fused attention included), so the figures compare with
published "FLOPs" tables and torchvision's GFLOPS. fvcore's handlers for normalisation (batch, layer, group and
instance norm), pooling, upsampling and grid sampling are left out: in this project that work is element-wise
(``elementwise_ops``), not mult-adds. The element-wise work and the memory access cost come from
:func:`profilers.layers.collect_layers`, whose records count normalisation with fvcore's own formulas.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import (
    addmm_flop_jit,
    bmm_flop_jit,
    conv_flop_jit,
    einsum_flop_jit,
    get_shape,
    linear_flop_jit,
    matmul_flop_jit,
)

from profilers.layers import attention_mult_adds, collect_layers, multi_head_attention_mult_adds

if TYPE_CHECKING:
    from fvcore.nn.jit_handles import Handle
    from torch import nn

    from profilers.layers import LayerRecord

__all__ = [
    "Counts",
    "count_all",
    "count_elementwise_ops",
    "count_memory_access_bytes",
    "count_mult_adds",
    "count_params",
]


def _sdpa_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::scaled_dot_product_attention`` (fvcore has no handler): same formula as the layer records."""
    return attention_mult_adds(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


def _native_mha_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """``aten::_native_multi_head_attention`` (the fused ``nn.MultiheadAttention`` kernel in eval mode)."""
    embed_dim = inputs[3].toIValue()
    return multi_head_attention_mult_adds(get_shape(inputs[0]), get_shape(inputs[1]), int(embed_dim))


# fvcore counts these by default; here their work is element-wise (a ``None`` handle tells fvcore to skip an op).
_ELEMENTWISE_OPS = ("aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm")


def _mult_add_handles() -> dict[str, Handle | None]:
    """fvcore's default handlers for multiply-accumulate work, plus fused attention; normalisation is explicitly
    ignored, pooling and upsampling are left out (element-wise work here)."""
    handles: dict[str, Handle | None] = {
        "aten::addmm": addmm_flop_jit,
        "aten::bmm": bmm_flop_jit,
        "aten::_convolution": conv_flop_jit,
        "aten::einsum": einsum_flop_jit,
        "aten::matmul": matmul_flop_jit,
        "aten::mm": matmul_flop_jit,
        "aten::linear": linear_flop_jit,
        "aten::scaled_dot_product_attention": _sdpa_jit,
        "aten::_native_multi_head_attention": _native_mha_jit,
    }
    handles.update(dict.fromkeys(_ELEMENTWISE_OPS))
    return handles


def _as_tuple(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and all(isinstance(t, torch.Tensor) for t in inputs):
        return inputs
    raise ValueError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {type(inputs).__name__}")


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements; a parameter shared between modules counts once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def count_mult_adds(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of convolutions, linear layers and matrix products in one forward pass in eval mode,
    counted by fvcore (one multiply-add = 1).

    Normalisation is not a mult-add. fvcore's warnings about operators it skips are silenced: those operators are
    element-wise and are counted by :func:`count_elementwise_ops`. Training flags of every submodule are restored afterwards.
    """
    args = _as_tuple(inputs)
    saved = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        analysis = FlopCountAnalysis(model, args)
        analysis.clear_op_handles()
        analysis.set_op_handle(**_mult_add_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            total = int(analysis.total())
    finally:
        for module, mode in saved:
            module.training = mode
    return total


def count_elementwise_ops(layers: list[LayerRecord]) -> int:
    """Sum of the element-wise work (normalisation, activations, additions, products, pooling, softmax ...) of
    ``layers``."""
    return sum(r.elementwise_ops for r in layers)


def count_memory_access_bytes(layers: list[LayerRecord]) -> int:
    """ShuffleNetV2's memory access cost: feature-map bytes read and written plus weight bytes read."""
    return sum(r.memory_access_bytes for r in layers)


@dataclass(frozen=True)
class Counts:
    """Every static count of one model on one input shape."""

    params: int
    mult_adds: int
    elementwise_ops: int
    memory_access_bytes: int
    layers: list[LayerRecord] = field(default_factory=list)


def count_all(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> Counts:
    """Parameters, fvcore mult-adds, and the element-wise ops and memory access of the layer records.

    The records' mult-adds add up to the fvcore figure (the same rules: convolutions, linear layers and matrix
    products only).
    """
    args = _as_tuple(inputs)
    layers = collect_layers(model, args)
    return Counts(
        params=count_params(model),
        mult_adds=count_mult_adds(model, args),
        elementwise_ops=count_elementwise_ops(layers),
        memory_access_bytes=count_memory_access_bytes(layers),
        layers=layers,
    )
