"""NASNet cells and network layout as frozen specs, decoded by pure functions (no torch here).

A cell has two inputs: state 0 is ``h_i`` (the previous cell's output) and state 1 is ``h_{i-1}`` (the
output of the cell before that), as in the reference implementation's hidden-state list. Block ``b`` reads
two states among ``0 .. 1 + b`` (the cell inputs and the earlier blocks), applies one operation to each and
adds the results; its output is state ``2 + b``. The cell output concatenates, in state order, every state
no block reads, plus the states of ``extra_concat`` (NASNet-A's published cells concatenate two states they
also read: ``h_{i-1}`` in the normal cell, block 1 in the reduction cell).

Compact text form of a cell, one block per ``;``: ``"sep_conv_5x5(0) + sep_conv_3x3(1); ..."``.
Architecture labels: ``"{kind}/b{block}/in{side}"`` (state index) and ``"{kind}/b{block}/op{side}"``
(operation name) for ``kind`` in ``normal``/``reduce``, ``block`` in ``0 .. B-1``, ``side`` in ``0, 1``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CELL_KINDS",
    "BlockSpec",
    "CellPlacement",
    "CellSpec",
    "cell_from_values",
    "cell_to_values",
    "format_cell",
    "label",
    "parse_cell",
    "plan_cells",
]

CELL_KINDS: tuple[str, str] = ("normal", "reduce")


def label(kind: str, block: int, field: str) -> str:
    """Architecture label of one field (``in0``, ``op0``, ``in1``, ``op1``) of one block."""
    return f"{kind}/b{block}/{field}"


@dataclass(frozen=True)
class BlockSpec:
    """One block: ``op[0](state[inputs[0]]) + op[1](state[inputs[1]])``."""

    inputs: tuple[int, int]
    ops: tuple[str, str]


@dataclass(frozen=True)
class CellSpec:
    """A cell: its blocks and the states concatenated in its output besides the unused ones."""

    blocks: tuple[BlockSpec, ...]
    extra_concat: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("a cell needs at least one block")
        for b, block in enumerate(self.blocks):
            for side, state in enumerate(block.inputs):
                if not 0 <= state < 2 + b:
                    raise ValueError(
                        f"block {b} input {side}: state {state} is not allowed; allowed: {list(range(2 + b))}"
                    )
        for state in self.extra_concat:
            if not 0 <= state < self.num_states:
                raise ValueError(f"extra_concat state {state} is not allowed; allowed: {list(range(self.num_states))}")

    @property
    def num_states(self) -> int:
        return 2 + len(self.blocks)

    def used_states(self) -> frozenset[int]:
        """States some block reads."""
        return frozenset(s for block in self.blocks for s in block.inputs)

    def concat_states(self) -> tuple[int, ...]:
        """States concatenated into the cell output, in state order (never empty: the last block is unused)."""
        used = self.used_states()
        extra = set(self.extra_concat)
        return tuple(s for s in range(self.num_states) if s not in used or s in extra)


def cell_from_values(
    values: Mapping[str, Any], kind: str, num_blocks: int, extra_concat: tuple[int, ...] = ()
) -> CellSpec:
    """The cell ``kind`` of a flat architecture mapping (labels as in the module docstring)."""
    blocks = tuple(
        BlockSpec(
            inputs=(int(values[label(kind, b, "in0")]), int(values[label(kind, b, "in1")])),
            ops=(str(values[label(kind, b, "op0")]), str(values[label(kind, b, "op1")])),
        )
        for b in range(num_blocks)
    )
    return CellSpec(blocks, tuple(extra_concat))


def cell_to_values(cell: CellSpec, kind: str) -> dict[str, Any]:
    """The flat labels of ``cell`` as cell ``kind`` (the inverse of :func:`cell_from_values`)."""
    values: dict[str, Any] = {}
    for b, block in enumerate(cell.blocks):
        for side in (0, 1):
            values[label(kind, b, f"in{side}")] = block.inputs[side]
            values[label(kind, b, f"op{side}")] = block.ops[side]
    return values


_TERM = re.compile(r"^\s*([A-Za-z0-9_]+)\s*\(\s*(\d+)\s*\)\s*$")


def parse_cell(text: str) -> tuple[BlockSpec, ...]:
    """Blocks from the compact form ``"op(state) + op(state); ..."`` (one block per ``;``)."""
    blocks: list[BlockSpec] = []
    for b, part in enumerate(p for p in text.split(";") if p.strip()):
        terms = part.split("+")
        if len(terms) != 2:
            raise ValueError(f"block {b} {part.strip()!r}: expected 'op(state) + op(state)'")
        parsed = [_TERM.match(t) for t in terms]
        if parsed[0] is None or parsed[1] is None:
            raise ValueError(f"block {b} {part.strip()!r}: each term must be 'op_name(state_index)'")
        blocks.append(
            BlockSpec(
                inputs=(int(parsed[0].group(2)), int(parsed[1].group(2))),
                ops=(parsed[0].group(1), parsed[1].group(1)),
            )
        )
    if not blocks:
        raise ValueError(f"no block in cell text {text!r}; expected 'op(state) + op(state); ...'")
    return tuple(blocks)


def format_cell(blocks: tuple[BlockSpec, ...]) -> str:
    """The compact text form of ``blocks`` (the inverse of :func:`parse_cell`)."""
    return "; ".join(f"{b.ops[0]}({b.inputs[0]}) + {b.ops[1]}({b.inputs[1]})" for b in blocks)


@dataclass(frozen=True)
class CellPlacement:
    """One cell of the network: which cell, how wide, and which earlier feature maps it reads.

    Feature maps are numbered in order: 0 is the stem convolution's output, ``k`` the output of the k-th
    placed cell. ``prev is None`` means the cell has no ``h_{i-1}`` of its own (the first cell after the stem
    convolution) and, as in the reference implementation, its input serves as both states, state 1
    unadjusted.
    """

    name: str
    kind: str  # "normal" or "reduce"
    filters: int
    input: int
    prev: int | None

    @property
    def stride(self) -> int:
        return 2 if self.kind == "reduce" else 1


def plan_cells(
    *,
    stem: str,
    cells_per_stack: int,
    filters: int,
    num_reductions: int,
    skip_reduction_layer_input: bool = False,
) -> tuple[CellPlacement, ...]:
    """The cell sequence of a NASNet (the reference ``_build_nasnet_base`` and its stems).

    ``imagenet`` stems add two reduction cells ``stem0``/``stem1`` with ``filters // 4`` and ``filters // 2``.
    Then come ``num_reductions + 1`` stacks of ``cells_per_stack`` normal cells with a reduction cell
    before every stack but the first; the filter count doubles at each reduction. With
    ``skip_reduction_layer_input`` (NASNet-A Large) the normal cell after a reduction cell reads as
    ``h_{i-1}`` the reduction cell's own ``h_{i-1}`` instead of its input.
    """
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"unknown stem {stem!r}; allowed: 'imagenet', 'cifar'")
    if cells_per_stack < 1 or filters < 1 or num_reductions < 0:
        raise ValueError(
            f"need cells_per_stack >= 1, filters >= 1 and num_reductions >= 0; "
            f"got {cells_per_stack}, {filters}, {num_reductions}"
        )
    cells: list[CellPlacement] = []
    # outputs[k] is the feature-map index of the k-th output so far; None stands for "no h_{i-1}".
    outputs: list[int | None] = [None, 0]

    def place(name: str, kind: str, width: int, prev: int | None) -> None:
        current = outputs[-1]
        assert current is not None
        cells.append(CellPlacement(name, kind, width, current, prev))
        outputs.append(len(cells))

    if stem == "imagenet":
        place("stem0", "reduce", filters // 4, outputs[-2])
        place("stem1", "reduce", filters // 2, outputs[-2])
    width = filters
    for stack in range(num_reductions + 1):
        for i in range(cells_per_stack):
            skip_prev = outputs[-2]
            if stack > 0 and i == 0:
                width *= 2
                place(f"reduction_{stack - 1}", "reduce", width, outputs[-2])
            prev = skip_prev if skip_reduction_layer_input else outputs[-2]
            place(f"cell_{stack * cells_per_stack + i}", "normal", width, prev)
    return tuple(cells)
