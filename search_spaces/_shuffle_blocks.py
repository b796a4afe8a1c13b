"""ShuffleNetV2 building blocks (plain PyTorch layers) and their frozen specs.

The blocks follow the ShuffleNetV2 paper (Ma et al. 2018) as used by SPOS (Guo et al. 2020) and DetNAS
(Chen et al. 2019): a stride-1 block splits its input in two halves after a channel shuffle, keeps one
half and transforms the other; a stride-2 block sends the whole input through both branches (a projection
branch and a main branch) and concatenates them, doubling the width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BLOCK_KINDS", "BlockSpec", "ChannelShuffleSplit", "ShuffleBlock", "conv_bn"]

# Option name -> (block family, depthwise kernel size).
BLOCK_KINDS: dict[str, tuple[str, int]] = {
    "shuffle3": ("shuffle", 3),
    "shuffle5": ("shuffle", 5),
    "shuffle7": ("shuffle", 7),
    "xception": ("xception", 3),
}


@dataclass(frozen=True)
class BlockSpec:
    """One choice layer, fully decoded: what to build, independent of how."""

    kind: str  # a key of BLOCK_KINDS
    in_channels: int
    out_channels: int
    stride: int

    def __post_init__(self) -> None:
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {self.kind!r}; allowed: {', '.join(BLOCK_KINDS)}")
        if self.stride not in (1, 2):
            raise ValueError(f"block stride must be 1 or 2, got {self.stride}")
        if self.out_channels % 2:
            raise ValueError(f"block out_channels must be even, got {self.out_channels}")
        if self.stride == 1 and self.in_channels != self.out_channels:
            raise ValueError(
                f"a stride-1 block keeps its width: in_channels {self.in_channels} != out_channels {self.out_channels}"
            )
        if self.stride == 2 and self.out_channels <= self.in_channels:
            raise ValueError(
                f"a stride-2 block must widen: out_channels {self.out_channels} <= in_channels {self.in_channels}"
            )

    @property
    def kernel_size(self) -> int:
        return BLOCK_KINDS[self.kind][1]

    @property
    def family(self) -> str:
        return BLOCK_KINDS[self.kind][0]

    @property
    def branch_in(self) -> int:
        """Channels entering the main branch: half of the input (stride 1) or all of it (stride 2)."""
        return self.in_channels // 2 if self.stride == 1 else self.in_channels

    @property
    def mid_channels(self) -> int:
        return self.out_channels // 2

    @property
    def branch_out(self) -> int:
        """Channels the main branch produces; the other branch (or the kept half) gives the rest."""
        return self.out_channels - self.branch_in


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act_layer: Callable[[], nn.Module] | None = nn.ReLU,
    norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
) -> list[nn.Module]:
    """Convolution (no bias), normalisation and an optional activation, as a list of layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        norm_layer(out_channels),
    ]
    if act_layer is not None:
        layers.append(act_layer())
    return layers


class ChannelShuffleSplit(nn.Module):
    """Channel shuffle with 2 groups followed by a split in two halves.

    Channels (0, 1, 2, 3, ...) become halves (0, 2, 4, ...) and (1, 3, 5, ...): the shuffle that mixes the
    two branches of the previous block, fused with the split of this one (as in the SPOS/DetNAS code).
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        x = x.reshape(b, c // 2, 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        kept, active = x.chunk(2, dim=1)
        return kept, active


class ShuffleBlock(nn.Module):
    """A ShuffleNetV2 block of family "shuffle" (pw-dw-pw) or "xception" (three dw-pw pairs)."""

    def __init__(
        self,
        spec: BlockSpec,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.spec = spec
        k, s = spec.kernel_size, spec.stride
        mid, b_in, b_out = spec.mid_channels, spec.branch_in, spec.branch_out
        if spec.family == "shuffle":
            main = [
                *conv_bn(b_in, mid, 1, act_layer=act_layer, norm_layer=norm_layer),
                *conv_bn(mid, mid, k, s, groups=mid, act_layer=None, norm_layer=norm_layer),
                *conv_bn(mid, b_out, 1, act_layer=act_layer, norm_layer=norm_layer),
            ]
        else:
            main = [
                *conv_bn(b_in, b_in, k, s, groups=b_in, act_layer=None, norm_layer=norm_layer),
                *conv_bn(b_in, mid, 1, act_layer=act_layer, norm_layer=norm_layer),
                *conv_bn(mid, mid, k, 1, groups=mid, act_layer=None, norm_layer=norm_layer),
                *conv_bn(mid, mid, 1, act_layer=act_layer, norm_layer=norm_layer),
                *conv_bn(mid, mid, k, 1, groups=mid, act_layer=None, norm_layer=norm_layer),
                *conv_bn(mid, b_out, 1, act_layer=act_layer, norm_layer=norm_layer),
            ]
        self.branch_main = nn.Sequential(*main)
        if s == 2:
            self.branch_proj: nn.Module | None = nn.Sequential(
                *conv_bn(b_in, b_in, k, s, groups=b_in, act_layer=None, norm_layer=norm_layer),
                *conv_bn(b_in, b_in, 1, act_layer=act_layer, norm_layer=norm_layer),
            )
            self.split: nn.Module | None = None
        else:
            self.branch_proj = None
            self.split = ChannelShuffleSplit()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split is not None:
            kept, active = self.split(x)
            return torch.cat((kept, self.branch_main(active)), dim=1)
        assert self.branch_proj is not None
        return torch.cat((self.branch_proj(x), self.branch_main(x)), dim=1)
