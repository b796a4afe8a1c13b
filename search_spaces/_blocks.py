"""A network as a chain of latency blocks: what a latency lookup table measures once and adds up.

``SearchSpace.latency_blocks(arch)`` lists the blocks of an architecture's static network in execution order,
without building the network and without timing anything (this package does no timing). Each
:class:`LatencyBlock` says

- ``key``: the block's configuration (kind, channels, stride, kernel, expansion, SE ...), prefixed by the space
  name, e.g. ``"shufflenet/shuffle5_c16-32_s2"``. It does not hold the input shapes: two blocks with the same
  key and the same ``input_shapes`` build the same layers on the same inputs, so a table measures them once
  (:attr:`LatencyBlock.signature` is that identity);
- ``build``: a factory of a fresh module of exactly those layers, whose ``forward`` takes one tensor per
  input (its weights are freshly initialised: latency does not depend on their values);
- ``input_shapes``: one shape per input, without the batch dimension (NASNet additions and concatenations
  take several inputs; everything else one);
- ``sources``: where each input comes from: :data:`NETWORK_INPUT` (-1) for the network input, ``k`` for the
  output of block ``k`` of the list (always an earlier block);
- ``output_shape``: the shape of its output, without the batch dimension.

Blocks cover the whole network (stem, every choice block / cell operation / MBConv block, head and
classifier); what they leave out is the network's glue (container calls, identities, flattening), which a
table models as a per-network overhead. :func:`run_blocks` runs a list of blocks as the network would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "NETWORK_INPUT",
    "Add",
    "BlockChain",
    "Concat",
    "LatencyBlock",
    "classifier_head",
    "run_blocks",
    "shape_text",
    "strided",
]

NETWORK_INPUT = -1

Shape = tuple[int, ...]


def shape_text(shape: Sequence[int]) -> str:
    """``(16, 8, 8)`` -> ``"16x8x8"``."""
    return "x".join(str(int(s)) for s in shape)


def strided(size: int, stride: int) -> int:
    """Output side of an odd-kernel layer with "same" padding (``kernel // 2``) and ``stride``: ceil(size / stride)."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LatencyBlock:
    """One block of a network, as a latency table sees it (see the module docstring)."""

    key: str
    build: Callable[[], nn.Module] = field(compare=False, repr=False)
    input_shapes: tuple[Shape, ...]
    sources: tuple[int, ...]
    output_shape: Shape

    def __post_init__(self) -> None:
        if not self.key or "@" in self.key:
            raise ValueError(f"a latency block key must be a non-empty string without '@', got {self.key!r}")
        if not self.input_shapes or len(self.input_shapes) != len(self.sources):
            raise ValueError(
                f"block {self.key!r}: needs one source per input shape, got {len(self.sources)} source(s) "
                f"for {len(self.input_shapes)} input shape(s)"
            )

    @property
    def input_shape(self) -> Shape:
        """The shape of the first (for most blocks, the only) input."""
        return self.input_shapes[0]

    @property
    def signature(self) -> str:
        """Key and every input shape, e.g. ``"nasnet/add@8x16x16+8x16x16"``: equal signatures, equal work."""
        return f"{self.key}@{'+'.join(shape_text(s) for s in self.input_shapes)}"


class BlockChain:
    """Collects the blocks of a network in execution order, checking that every input is an earlier output."""

    def __init__(self, input_shape: Sequence[int]) -> None:
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        self.blocks: list[LatencyBlock] = []

    def shape(self, ref: int) -> Shape:
        """The shape of output ``ref`` (``NETWORK_INPUT`` or an index of an earlier block)."""
        if ref == NETWORK_INPUT:
            return self.input_shape
        if not 0 <= ref < len(self.blocks):
            raise ValueError(f"block output {ref} does not exist yet; allowed: -1 .. {len(self.blocks) - 1}")
        return self.blocks[ref].output_shape

    @property
    def last(self) -> int:
        """The latest output: what a plain sequential network feeds to its next block."""
        return len(self.blocks) - 1

    def add(
        self,
        key: str,
        build: Callable[[], nn.Module],
        output_shape: Sequence[int],
        sources: Sequence[int] | None = None,
    ) -> int:
        """Append a block reading ``sources`` (default: the latest output); return the index of its output."""
        refs = (self.last,) if sources is None else tuple(sources)
        block = LatencyBlock(
            key=key,
            build=build,
            input_shapes=tuple(self.shape(r) for r in refs),
            sources=refs,
            output_shape=tuple(int(s) for s in output_shape),
        )
        self.blocks.append(block)
        return len(self.blocks) - 1


class Add(nn.Module):
    """The sum of two inputs (a NASNet block adds its two operations' outputs)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Concat(nn.Module):
    """Its inputs concatenated along the channels (a NASNet cell's output)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, dim=1)


def classifier_head(
    layers: Sequence[nn.Module], in_features: int, num_classes: int, dropout: float, *, bias: bool = True
) -> nn.Sequential:
    """``layers`` (e.g. the head convolution), global average pooling, flatten, dropout, linear classifier."""
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Dropout(dropout),
        nn.Linear(in_features, num_classes, bias=bias),
    )


def run_blocks(blocks: Sequence[LatencyBlock], x: torch.Tensor) -> torch.Tensor:
    """Build every block and run them on ``x`` (batched) as the network would: the last block's output.

    Checks as it goes that every input and output has the shape the block declares.
    """
    if not blocks:
        raise ValueError("run_blocks needs at least one block")
    outputs: list[torch.Tensor] = []
    for index, block in enumerate(blocks):
        inputs = [x if ref == NETWORK_INPUT else outputs[ref] for ref in block.sources]
        got = [tuple(t.shape[1:]) for t in inputs]
        if got != list(block.input_shapes):
            raise ValueError(
                f"block {index} {block.key!r}: inputs of shapes {got}, declared {list(block.input_shapes)}"
            )
        out = block.build().eval()(*inputs)
        if tuple(out.shape[1:]) != block.output_shape:
            raise ValueError(
                f"block {index} {block.key!r}: output of shape {tuple(out.shape[1:])}, declared {block.output_shape}"
            )
        outputs.append(out)
    return outputs[-1]
