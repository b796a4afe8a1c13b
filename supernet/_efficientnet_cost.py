"""Mult-adds of an EfficientNet spec at a resolution, counted from the spec alone.

The sandwich rule needs the largest and smallest architectures of the compound space, whose width, depth and
resolution trade against each other: mult-adds order them. ``supernet`` may not import ``profilers`` (which
counts a built model with fvcore), and building every grid point to count it would be slow, so this counts
the same terms fvcore counts -- convolutions and the classifier -- from the layer sizes. Element-wise work
(activations, batch norm, pooling, the SE gate and the residual add) is not a mult-add (DESIGN.md, Naming).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search_spaces.efficientnet import NetworkSpec

__all__ = ["mult_adds"]


def _strided(side: int, stride: int) -> int:
    """Output side of an odd-kernel convolution with 'same' padding."""
    return (side - 1) // stride + 1


def mult_adds(spec: NetworkSpec, resolution: int, in_channels: int, num_classes: int) -> int:
    """Multiply-accumulates of ``EfficientNet(spec)`` on one ``resolution`` x ``resolution`` image."""
    side = _strided(resolution, spec.stem_stride)
    total = side * side * spec.stem_channels * in_channels * 9
    for blocks in spec.stage_blocks():
        for block in blocks:
            mid = block.mid_channels
            if block.expansion != 1:
                total += side * side * block.in_channels * mid
            side = _strided(side, block.stride)
            total += side * side * mid * block.kernel * block.kernel
            total += 2 * mid * block.se_channels  # on the pooled 1x1 map
            total += side * side * mid * block.out_channels
    total += side * side * spec.out_channels * spec.head_channels
    return total + spec.head_channels * num_classes
