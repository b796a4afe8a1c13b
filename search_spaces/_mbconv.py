"""MBConv layers and the EfficientNet-style network built from a ``NetworkSpec``.

Only plain PyTorch layers (Conv2d, BatchNorm2d, SiLU, Sigmoid, AdaptiveAvgPool2d, Dropout, Linear) composed
by small modules. Every layer takes its normalisation and activation as arguments (callables making a
fresh module: ``norm_layer(channels)``, ``act_layer()``), as timm's ``ConvNormAct``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from search_spaces._efficientnet_spec import NetworkSpec

__all__ = ["ConvNormAct", "EfficientNet", "MBConv", "SqueezeExcite", "tf_batch_norm"]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


def tf_batch_norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm with the reference implementation's constants (TF decay 0.99, epsilon 1e-3)."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class ConvNormAct(nn.Sequential):
    """Convolution (no bias, 'same' padding for odd kernels), normalisation, optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        *,
        norm_layer: NormLayer,
        act_layer: ActLayer | None,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False
            ),
            norm=norm_layer(out_channels),
        )
        if act_layer is not None:
            layers["act"] = act_layer()
        super().__init__(layers)


class SqueezeExcite(nn.Module):
    """Channel gating: global average pool, 1x1 reduce, activation, 1x1 expand, gate, multiply."""

    def __init__(
        self, channels: int, squeeze_channels: int, *, act_layer: ActLayer, gate_layer: ActLayer = nn.Sigmoid
    ) -> None:
        super().__init__()
        if squeeze_channels < 1:
            raise ValueError(f"squeeze-and-excitation needs >= 1 squeeze channel, got {squeeze_channels}")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = act_layer()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (linear).

    The identity shortcut is added when the block keeps stride 1 and the channel count. With
    ``expansion == 1`` there is no expansion convolution (MBConv1 of the papers).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expansion: int,
        se_channels: int,
        *,
        norm_layer: NormLayer,
        act_layer: ActLayer,
    ) -> None:
        super().__init__()
        mid = in_channels * expansion
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expansion != 1:
            layers["expand"] = ConvNormAct(in_channels, mid, 1, norm_layer=norm_layer, act_layer=act_layer)
        layers["depthwise"] = ConvNormAct(
            mid, mid, kernel, stride, groups=mid, norm_layer=norm_layer, act_layer=act_layer
        )
        if se_channels > 0:
            layers["se"] = SqueezeExcite(mid, se_channels, act_layer=act_layer)
        layers["project"] = ConvNormAct(mid, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.body = nn.Sequential(layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class EfficientNet(nn.Module):
    """Stem conv 3x3 -> MBConv stages -> 1x1 head conv -> global pool -> dropout -> linear classifier.

    ``stages[i][j]`` is block ``j`` of stage ``i`` (one ``nn.Sequential`` per stage), so a stage's depth is
    ``len(model.stages[i])``. Stochastic depth (the reference's drop-connect) is a training regulariser
    that is the identity at inference: it is left out of this static model.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        *,
        in_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        norm_layer: NormLayer = tf_batch_norm,
        act_layer: ActLayer = nn.SiLU,
    ) -> None:
        super().__init__()
        self.stem = ConvNormAct(
            in_channels, spec.stem_channels, 3, spec.stem_stride, norm_layer=norm_layer, act_layer=act_layer
        )
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    *(
                        MBConv(
                            block.in_channels,
                            block.out_channels,
                            block.kernel,
                            block.stride,
                            block.expansion,
                            block.se_channels,
                            norm_layer=norm_layer,
                            act_layer=act_layer,
                        )
                        for block in blocks
                    )
                )
                for blocks in spec.stage_blocks()
            )
        )
        self.head = ConvNormAct(spec.out_channels, spec.head_channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(spec.head_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the reference: convolutions normal with std sqrt(2 / fan-out), linear uniform in +-1/sqrt(out)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # fan-out per group, as the reference's depthwise kernels (k*k*1 for a depthwise conv)
                out_channels, _, kh, kw = module.weight.shape
                fan_out = kh * kw * out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features**0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))
