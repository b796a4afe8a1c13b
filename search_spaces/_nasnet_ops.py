"""The operations of the NASNet search space, as static layers of plain PyTorch.

Every operation maps ``in_channels`` to the cell's ``filters`` and takes a ``stride`` (2 only when a reduction
cell reads one of its two inputs). The forms follow the NASNet paper (Zoph et al. 2018) and its reference
implementation (TF-slim ``nets/nasnet/nasnet_utils.py``):

- separable convolutions are applied twice, each time ReLU -> depthwise k x k -> pointwise 1x1 -> BN; the
  first one carries the stride and maps to ``filters``;
- pooling has "same" padding (average pooling ignores the padded cells) and is followed by 1x1 conv -> BN
  only when the channel count must change;
- identity is ReLU -> 1x1 conv (with the stride) -> BN when it must stride or change channels, else nothing;
- the operations the reference code does not implement (plain, factorised and dilated convolutions) use
  the same ReLU -> conv -> BN order: ``conv_1x3_3x1`` / ``conv_1x7_7x1`` are two such units (1xk with the
  horizontal stride, then kx1 with the vertical one); ``dil_conv_3x3`` is a 3x3 convolution with dilation 2.

Layers take their normalisation (``norm_layer(channels)``) and activation (``act_layer()``) as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "NASNET_OPERATIONS",
    "ActConvNorm",
    "FactorizedReduce",
    "OpInfo",
    "Pooling",
    "SepConvStack",
    "make_op",
]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


@dataclass(frozen=True)
class OpInfo:
    """What an operation name stands for: its family and kernel size."""

    family: str  # identity | conv | factorized | dilated | sep_conv | avg_pool | max_pool
    kernel_size: int = 1


# The NASNet operation set (paper, Section 3), in the paper's order.
NASNET_OPERATIONS: dict[str, OpInfo] = {
    "identity": OpInfo("identity"),
    "conv_1x3_3x1": OpInfo("factorized", 3),
    "conv_1x7_7x1": OpInfo("factorized", 7),
    "dil_conv_3x3": OpInfo("dilated", 3),
    "avg_pool_3x3": OpInfo("avg_pool", 3),
    "max_pool_3x3": OpInfo("max_pool", 3),
    "max_pool_5x5": OpInfo("max_pool", 5),
    "max_pool_7x7": OpInfo("max_pool", 7),
    "conv_1x1": OpInfo("conv", 1),
    "conv_3x3": OpInfo("conv", 3),
    "sep_conv_3x3": OpInfo("sep_conv", 3),
    "sep_conv_5x5": OpInfo("sep_conv", 5),
    "sep_conv_7x7": OpInfo("sep_conv", 7),
}


class ActConvNorm(nn.Sequential):
    """Activation -> convolution (no bias) -> normalisation, NASNet's order.

    ``kernel_size`` and ``stride`` may be pairs (the 1xk / kx1 halves of a factorised convolution); padding
    keeps the size ("same") for odd kernels, and a stride of 2 gives ceil(size / 2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        dilation: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        layers: list[nn.Module] = [] if act_layer is None else [act_layer()]
        layers += [
            nn.Conv2d(in_channels, out_channels, (kh, kw), stride, padding, dilation=dilation, bias=False),
            norm_layer(out_channels),
        ]
        super().__init__(*layers)


class SepConvStack(nn.Sequential):
    """NASNet's separable convolution: (ReLU -> depthwise k x k -> pointwise -> BN) twice.

    The first unit carries the stride and maps ``in_channels`` to ``out_channels`` (as TF-slim's
    ``separable_conv2d`` with depth multiplier 1 does); the second keeps ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        repeats: int = 2,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"a separable convolution stack needs repeats >= 1, got {repeats}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(repeats):
            s = stride if i == 0 else 1
            layers += [
                act_layer(),
                nn.Conv2d(channels, channels, kernel_size, s, kernel_size // 2, groups=channels, bias=False),
                nn.Conv2d(channels, out_channels, 1, bias=False),
                norm_layer(out_channels),
            ]
            channels = out_channels
        super().__init__(*layers)


class Pooling(nn.Module):
    """Average or max pooling with "same" padding, then 1x1 conv -> BN if the channel count changes."""

    def __init__(
        self,
        kind: str,
        kernel_size: int,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        if kind == "avg":
            self.pool: nn.Module = nn.AvgPool2d(kernel_size, stride, pad, count_include_pad=False)
        elif kind == "max":
            self.pool = nn.MaxPool2d(kernel_size, stride, pad)
        else:
            raise ValueError(f"unknown pooling kind {kind!r}; allowed: 'avg', 'max'")
        self.project: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else ActConvNorm(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(x))


class FactorizedReduce(nn.Module):
    """NASNet's factorised reduction: halve the size without dropping any input pixel.

    With ``stride=2`` two 1x1 convolutions read the even pixels and, shifted by one, the odd pixels; their
    outputs (``out_channels // 2`` and the rest) are concatenated and normalised. With ``stride=1`` it is a
    1x1 convolution and normalisation. There is no activation inside: callers add one where the reference
    does (adjusting a cell input) and not where it does not (the cell output).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 2, *, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"factorized reduction stride must be 1 or 2, got {stride}")
        if stride == 2 and out_channels < 2:
            raise ValueError(f"factorized reduction needs out_channels >= 2 to split in two paths, got {out_channels}")
        self.stride = stride
        if stride == 1:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        else:
            half = out_channels // 2
            self.subsample = nn.AvgPool2d(1, stride=2)
            self.shift = nn.ZeroPad2d((0, 1, 0, 1))
            self.conv1 = nn.Conv2d(in_channels, half, 1, bias=False)
            self.conv2 = nn.Conv2d(in_channels, out_channels - half, 1, bias=False)
        self.norm = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.norm(self.conv1(x))
        path1 = self.conv1(self.subsample(x))
        path2 = self.conv2(self.subsample(self.shift(x)[:, :, 1:, 1:]))
        return self.norm(torch.cat((path1, path2), dim=1))


def make_op(
    name: str,
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    norm_layer: NormLayer = nn.BatchNorm2d,
    act_layer: ActLayer = nn.ReLU,
) -> nn.Module:
    """The static layers of operation ``name`` (a key of ``NASNET_OPERATIONS``)."""
    if name not in NASNET_OPERATIONS:
        raise ValueError(f"unknown NASNet operation {name!r}; allowed: {', '.join(NASNET_OPERATIONS)}")
    if stride not in (1, 2):
        raise ValueError(f"operation stride must be 1 or 2, got {stride}")
    info = NASNET_OPERATIONS[name]
    k = info.kernel_size
    if info.family == "identity":
        if stride == 1 and in_channels == out_channels:
            return nn.Identity()
        return ActConvNorm(in_channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=act_layer)
    if info.family == "conv":
        return ActConvNorm(in_channels, out_channels, k, stride, norm_layer=norm_layer, act_layer=act_layer)
    if info.family == "dilated":
        return ActConvNorm(in_channels, out_channels, k, stride, dilation=2, norm_layer=norm_layer, act_layer=act_layer)
    if info.family == "factorized":
        return nn.Sequential(
            ActConvNorm(in_channels, out_channels, (1, k), (1, stride), norm_layer=norm_layer, act_layer=act_layer),
            ActConvNorm(out_channels, out_channels, (k, 1), (stride, 1), norm_layer=norm_layer, act_layer=act_layer),
        )
    if info.family == "sep_conv":
        return SepConvStack(in_channels, out_channels, k, stride, norm_layer=norm_layer, act_layer=act_layer)
    kind = "avg" if info.family == "avg_pool" else "max"
    return Pooling(kind, k, in_channels, out_channels, stride, norm_layer=norm_layer)
