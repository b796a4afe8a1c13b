"""Which aten operator is which: the operator names (overload packets) the layer recorder tells apart.

An operator is looked up by its overload packet's name (``torch.ops.aten.relu_.default`` -> ``"relu_"``). Operators
not listed here are still recorded: pointwise ones (by their ``torch.Tag``) count one element-wise op per output
element, reductions one per input element, anything else only its memory access.
"""

from __future__ import annotations

__all__ = [
    "ACTIVATION_OPS",
    "ADD_OPS",
    "ATTENTION_OPS",
    "BATCH_NORM_OPS",
    "CONCAT_OPS",
    "CONV_OPS",
    "COPY_OPS",
    "GLOBAL_POOL_OPS",
    "MATMUL_OPS",
    "MUL_OPS",
    "NORMALISATION_OPS",
    "NORM_OPS",
    "SKIPPED_OPS",
    "SOFTMAX_OPS",
    "UPSAMPLE_OPS",
    "WINDOW_POOL_OPS",
    "is_normalisation",
]

CONV_OPS = frozenset({"convolution", "_convolution", "convolution_overrideable", "mkldnn_convolution"})
MATMUL_OPS = frozenset({"addmm", "mm", "bmm", "baddbmm", "addbmm", "addmv", "mv", "dot", "_addmm_activation"})
BATCH_NORM_OPS = frozenset(
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
NORM_OPS = frozenset({"native_layer_norm", "native_group_norm"})
# Every normalisation: its work is element-wise (``elementwise_ops``), never mult-adds.
NORMALISATION_OPS = BATCH_NORM_OPS | NORM_OPS
ACTIVATION_OPS = frozenset(
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
ADD_OPS = frozenset({"add", "add_", "sub", "sub_", "rsub"})
MUL_OPS = frozenset({"mul", "mul_", "div", "div_"})
CONCAT_OPS = frozenset({"cat", "stack", "concat", "concatenate"})
COPY_OPS = frozenset({"clone", "copy_", "_to_copy", "copy", "contiguous"})
WINDOW_POOL_OPS = frozenset(
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
GLOBAL_POOL_OPS = frozenset(
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
ATTENTION_OPS = frozenset(
    {
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    }
)
SOFTMAX_OPS = frozenset({"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"})
UPSAMPLE_OPS = frozenset(
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
SKIPPED_OPS = frozenset(
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


def is_normalisation(op: str) -> bool:
    """True when ``op``, a recorded operator name such as ``"aten.native_layer_norm.default"``, is a normalisation."""
    parts = op.split(".")
    return len(parts) >= 2 and parts[1] in NORMALISATION_OPS
