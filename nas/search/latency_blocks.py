"""A search space's blocks as entries of a latency table: :class:`SpaceLatencyTable` and the block keys.

Every block of ``SearchSpace.latency_blocks(arch)`` becomes a ``(key, module factory, input shape)`` triple of
:class:`profilers.LatencyTable`; a block with several inputs is timed on its first input, the others held as
fixed tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from profilers import LatencyTable

if TYPE_CHECKING:
    from search_spaces import Architecture, LatencyBlock, SearchSpace

__all__ = ["SpaceLatencyTable", "TableBlock", "as_table_block", "missing_blocks", "table_blocks", "table_key"]

TableBlock = tuple[str, Callable[[], nn.Module], tuple[int, ...]]


@dataclass
class SpaceLatencyTable(LatencyTable):
    """A :class:`profilers.LatencyTable` of one search space's blocks.

    ``space`` and ``space_config`` name what it was built for; ``replay`` holds the options of the replayed
    block timing (empty: blocks are timed one at a time by ``measure_latency`` with ``latency_options``).
    Entries, the fit of scale and overhead, prediction and the atomic save are the generic table's.
    """

    space: str = ""
    space_config: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)

    def matches_space(self, space: SearchSpace) -> bool:
        return self.space == space.name and self.space_config == space.config_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "space": self.space,
            "space_config": dict(self.space_config),
            "replay": dict(self.replay),
        }

    def load_extra(self, data: dict[str, Any]) -> None:
        self.space = str(data.get("space", ""))
        self.space_config = dict(data.get("space_config", {}))
        self.replay = dict(data.get("replay", {}))




class _FixedInputs(nn.Module):
    """A multi-input block timed on its first input: the other inputs are fixed tensors held as buffers."""

    def __init__(self, block: nn.Module, extra: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.block = block
        self.count = len(extra)
        for index, tensor in enumerate(extra):
            self.register_buffer(f"input{index + 1}", tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, *(getattr(self, f"input{i + 1}") for i in range(self.count)))


def _with_fixed_inputs(block: LatencyBlock, batch_size: int, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    extra = [torch.randn((batch_size, *shape), generator=generator) for shape in block.input_shapes[1:]]
    return _FixedInputs(block.build(), extra)


def table_key(block: LatencyBlock) -> str:
    """The block's key, plus the shapes of its inputs after the first (the table adds the first)."""
    if len(block.input_shapes) == 1:
        return block.key
    return f"{block.key}+" + "+".join("x".join(str(d) for d in s) for s in block.input_shapes[1:])


def as_table_block(block: LatencyBlock, batch_size: int) -> TableBlock:
    if len(block.input_shapes) == 1:
        return (block.key, block.build, block.input_shape)
    return (table_key(block), partial(_with_fixed_inputs, block, batch_size), block.input_shape)


def table_blocks(space: SearchSpace, arch: Architecture, *, batch_size: int = 1) -> list[TableBlock]:
    """``(key, module factory, input shape)`` of every block of ``arch``, as ``LatencyTable.predict`` takes them.

    A multi-input block's factory holds its other inputs as fixed tensors of batch ``batch_size``.
    """
    return [as_table_block(block, batch_size) for block in space.latency_blocks(arch)]


def missing_blocks(table: LatencyTable, space: SearchSpace, arch: Architecture) -> list[LatencyBlock]:
    """The blocks of ``arch`` the table has not measured yet."""
    return [b for b in space.latency_blocks(arch) if (table_key(b), b.input_shape) not in table]
