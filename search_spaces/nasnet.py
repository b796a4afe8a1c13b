"""Space `nasnet`: the NASNet cell search space (Zoph et al. 2018, "Learning Transferable Architectures for
Scalable Image Recognition").

A NASNet is a stem, then ``num_reductions + 1`` stacks of ``cells_per_stack`` (N) normal cells with a
reduction cell between stacks; the cell filter count starts at ``filters`` and doubles at each reduction.
The normal cell and the reduction cell are searched separately; each has ``num_blocks`` (B) blocks, and
block ``b`` picks two inputs among the cell's two inputs and the earlier blocks, and an operation for each
(see ``search_spaces._nasnet_specs`` for the state numbering and the cell output rule).

Labels, normal cell first: ``normal/b0/in0``, ``normal/b0/op0``, ``normal/b0/in1``, ``normal/b0/op1``,
``normal/b1/in0`` ... ``reduce/b{B-1}/op1``. Inputs of block ``b`` are the ints ``0 .. 1 + b``
(0 = ``h_i``, the previous cell's output; 1 = ``h_{i-1}``; ``2 + j`` = block ``j``); operations are the
configured ``operations``. Every combination is a valid architecture.

The paper names a network "N @ P": N normal cells per stack and P filters in the penultimate layer, the
width of the last normal cell's output = (states it concatenates) x ``filters`` x 2**``num_reductions``.
NASNet-A's normal cell concatenates 6 states, so "4 @ 1056" is ``cells_per_stack=4, filters=44``
(6 x 44 x 4 = 1056); see :meth:`NASNetSpace.notation`.

The specs, operations and the factorised reduction are re-exported here as public names for the weight-sharing
supernet (``supernet.nasnet``), which builds its candidate operations with the very same ``make_op``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from search_spaces._arch import Architecture, Scalar
from search_spaces._blocks import LatencyBlock
from search_spaces._nasnet_blocks import nasnet_latency_blocks
from search_spaces._nasnet_model import NASNet, StemSpec
from search_spaces._nasnet_ops import NASNET_OPERATIONS, FactorizedReduce, make_op
from search_spaces._nasnet_specs import (
    CELL_KINDS,
    CellPlacement,
    CellSpec,
    cell_from_values,
    cell_to_values,
    format_cell,
    label,
    parse_cell,
    plan_cells,
)
from search_spaces._space import Preset, SearchSpace, SpaceConfig

__all__ = [
    "NASNET_A_NORMAL",
    "NASNET_A_REDUCE",
    "NASNET_OPERATIONS",
    "CellPlacement",
    "CellSpec",
    "FactorizedReduce",
    "NASNet",
    "NASNetConfig",
    "NASNetSpace",
    "make_op",
]


class NASNetConfig(SpaceConfig):
    """Macro layout of a NASNet; the cells are the search."""

    stem: Literal["imagenet", "cifar"]
    # Stem width: int(32 * stem_multiplier) for the ImageNet stem, int(filters * stem_multiplier) for CIFAR.
    stem_multiplier: float = 1.0
    cells_per_stack: int  # N
    filters: int  # cell filters of the first stack (the reference code's num_conv_filters)
    num_blocks: int = 5  # B
    num_reductions: int = 2
    skip_reduction_layer_input: bool = False
    operations: tuple[str, ...] = tuple(NASNET_OPERATIONS)
    # States concatenated into the cell output although a block reads them (NASNet-A: (1,) and (3,)).
    normal_extra_concat: tuple[int, ...] = ()
    reduce_extra_concat: tuple[int, ...] = ()
    dropout: float = 0.0

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [op for op in value if op not in NASNET_OPERATIONS]
        if bad or not value or len(set(value)) != len(value):
            raise ValueError(
                f"operations must be distinct names, at least one; unknown: {bad}; allowed: {list(NASNET_OPERATIONS)}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NASNetConfig:
        min_filters = 8 if self.stem == "imagenet" else 2  # factorised reductions split filters in two
        if self.filters < min_filters:
            raise ValueError(f"filters must be >= {min_filters} with the {self.stem} stem, got {self.filters}")
        if self.cells_per_stack < 1 or self.num_blocks < 1 or self.num_reductions < 0:
            raise ValueError(
                "need cells_per_stack >= 1, num_blocks >= 1 and num_reductions >= 0; got "
                f"{self.cells_per_stack}, {self.num_blocks}, {self.num_reductions}"
            )
        if self.stem_multiplier <= 0 or self.stem_width < 1:
            raise ValueError(f"stem_multiplier {self.stem_multiplier} must give a stem width >= 1")
        states = list(range(2 + self.num_blocks))
        for name in ("normal_extra_concat", "reduce_extra_concat"):
            bad = [s for s in getattr(self, name) if s not in states]
            if bad:
                raise ValueError(f"{name}: states {bad} are not allowed; allowed: {states}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        min_size = 3 if self.stem == "imagenet" else 1
        if self.input_size < min_size or self.in_channels < 1 or self.num_classes < 1:
            raise ValueError(
                f"need input_size >= {min_size}, in_channels >= 1 and num_classes >= 1; got "
                f"{self.input_size}, {self.in_channels}, {self.num_classes}"
            )
        return self

    @property
    def stem_width(self) -> int:
        base = 32 if self.stem == "imagenet" else self.filters
        return int(base * self.stem_multiplier)


# NASNet-A (paper Figure 4; reference implementation NasNetANormalCell / NasNetAReductionCell).
NASNET_A_NORMAL = (
    "sep_conv_5x5(0) + sep_conv_3x3(1); sep_conv_5x5(1) + sep_conv_3x3(1); avg_pool_3x3(0) + identity(1); "
    "avg_pool_3x3(1) + avg_pool_3x3(1); sep_conv_3x3(0) + identity(0)"
)
NASNET_A_REDUCE = (
    "sep_conv_5x5(0) + sep_conv_7x7(1); max_pool_3x3(0) + sep_conv_7x7(1); avg_pool_3x3(0) + sep_conv_5x5(1); "
    "identity(3) + avg_pool_3x3(2); sep_conv_3x3(2) + max_pool_3x3(0)"
)
# The reference's used_hiddenstates: the normal cell also outputs h_{i-1}, the reduction cell block 1.
_NASNET_A_EXTRA = {"normal_extra_concat": (1,), "reduce_extra_concat": (3,)}

_LAYOUTS: dict[str, dict[str, Any]] = {
    # Reference hparams: mobile_imagenet_config, large_imagenet_config, cifar_config (TF-slim nets/nasnet).
    "mobile": {
        "input_size": 224,
        "num_classes": 1000,
        "in_channels": 3,
        "stem": "imagenet",
        "stem_multiplier": 1.0,
        "cells_per_stack": 4,
        "filters": 44,
        "dropout": 0.5,
    },
    "large": {
        "input_size": 331,
        "num_classes": 1000,
        "in_channels": 3,
        "stem": "imagenet",
        "stem_multiplier": 3.0,
        "cells_per_stack": 6,
        "filters": 168,
        "skip_reduction_layer_input": True,
        "dropout": 0.5,
    },
    "cifar": {
        "input_size": 32,
        "num_classes": 10,
        "in_channels": 3,
        "stem": "cifar",
        "stem_multiplier": 3.0,
        "cells_per_stack": 6,
        "filters": 32,
    },
    # For 16-32 pixel inputs (the embedded default, digits at 16x16): one normal cell per stack, 8 filters
    # (16 -> 8 -> 4 pixels): five cells of five blocks.
    "small": {
        "input_size": 16,
        "num_classes": 10,
        "in_channels": 1,
        "stem": "cifar",
        "stem_multiplier": 2.0,
        "cells_per_stack": 1,
        "filters": 8,
    },
}


class NASNetSpace(SearchSpace):
    name: ClassVar[str] = "nasnet"
    description: ClassVar[str] = (
        "NASNet cells (Zoph et al. 2018): normal and reduction cells of B blocks, each adding two operations "
        "on two chosen earlier states"
    )
    Config: ClassVar[type[SpaceConfig]] = NASNetConfig
    layouts: ClassVar[Mapping[str, Mapping[str, Any]]] = _LAYOUTS
    default_layout: ClassVar[str] = "cifar"

    @property
    def layout(self) -> NASNetConfig:
        assert isinstance(self.config, NASNetConfig)
        return self.config

    # choices -----------------------------------------------------------------------------------
    def choices(self) -> dict[str, tuple[Scalar, ...]]:
        ops: tuple[Scalar, ...] = tuple(self.layout.operations)
        table: dict[str, tuple[Scalar, ...]] = {}
        for kind in CELL_KINDS:
            for b in range(self.layout.num_blocks):
                inputs: tuple[Scalar, ...] = tuple(range(2 + b))
                table[label(kind, b, "in0")] = inputs
                table[label(kind, b, "op0")] = ops
                table[label(kind, b, "in1")] = inputs
                table[label(kind, b, "op1")] = ops
        return table

    # decoding ----------------------------------------------------------------------------------
    def decode(self, arch: Architecture | Mapping[str, Any]) -> dict[str, CellSpec]:
        """The normal and reduction cells of a valid architecture."""
        arch = self.validate(arch)
        cfg = self.layout
        return {
            "normal": cell_from_values(arch.values, "normal", cfg.num_blocks, cfg.normal_extra_concat),
            "reduce": cell_from_values(arch.values, "reduce", cfg.num_blocks, cfg.reduce_extra_concat),
        }

    def placements(self) -> tuple[CellPlacement, ...]:
        cfg = self.layout
        return plan_cells(
            stem=cfg.stem,
            cells_per_stack=cfg.cells_per_stack,
            filters=cfg.filters,
            num_reductions=cfg.num_reductions,
            skip_reduction_layer_input=cfg.skip_reduction_layer_input,
        )

    def cell_text(self, arch: Architecture | Mapping[str, Any]) -> dict[str, str]:
        """The compact text form of both cells, e.g. ``{"normal": "sep_conv_5x5(0) + ...", ...}``."""
        return {kind: format_cell(cell.blocks) for kind, cell in self.decode(arch).items()}

    def arch_from_cells(self, normal: str, reduce: str) -> Architecture:
        """An architecture from the compact text form of its two cells (see ``cell_text``)."""
        values = cell_to_values(CellSpec(parse_cell(normal)), "normal")
        values.update(cell_to_values(CellSpec(parse_cell(reduce)), "reduce"))
        return self.make_arch(values)

    def penultimate_filters(self, arch: Architecture | Mapping[str, Any]) -> int:
        """Width of the last normal cell's output, the "P" of the paper's "N @ P" notation."""
        cfg = self.layout
        last = cfg.filters * 2**cfg.num_reductions
        return len(self.decode(arch)["normal"].concat_states()) * last

    def notation(self, arch: Architecture | Mapping[str, Any]) -> str:
        """The paper's name of the network size, e.g. ``"4 @ 1056"``."""
        return f"{self.layout.cells_per_stack} @ {self.penultimate_filters(arch)}"

    # building ----------------------------------------------------------------------------------
    def build(self, arch: Architecture | Mapping[str, Any]) -> NASNet:
        cfg = self.layout
        stem = StemSpec(cfg.stem, cfg.in_channels, cfg.stem_width)
        return NASNet(stem, self.placements(), self.decode(arch), cfg.num_classes, cfg.dropout)

    def latency_blocks(self, arch: Architecture | Mapping[str, Any]) -> list[LatencyBlock]:
        """Stem, each cell's adjustments, operations, sums, output fits and concatenation, then the head.

        Cells are split into their operations so that architectures share measurements (see
        ``search_spaces._nasnet_blocks``).
        """
        cfg = self.layout
        stem = StemSpec(cfg.stem, cfg.in_channels, cfg.stem_width)
        return nasnet_latency_blocks(
            stem, self.placements(), self.decode(arch), cfg.input_size, cfg.num_classes, cfg.dropout
        )

    # presets -----------------------------------------------------------------------------------
    @classmethod
    def preset_table(cls) -> dict[str, Preset]:
        values = {
            **cell_to_values(CellSpec(parse_cell(NASNET_A_NORMAL)), "normal"),
            **cell_to_values(CellSpec(parse_cell(NASNET_A_REDUCE)), "reduce"),
        }
        published = {
            # Paper Table 3 (mobile) and Table 2 (large): params, mult-adds at 224 / 331 pixels.
            "nasnet-a-mobile": ("mobile", "NASNet-A (4 @ 1056), 224 input, 1000 classes", 5.3e6, 564e6),
            "nasnet-a-large": ("large", "NASNet-A (6 @ 4032), 331 input, 1000 classes", 88.9e6, 23.8e9),
            # Paper Table 1: CIFAR-10 NASNet-A (6 @ 768), 3.3M params (no mult-adds published).
            "nasnet-a-cifar": ("cifar", "NASNet-A (6 @ 768), 32 input, 10 classes", 3.3e6, None),
        }
        table: dict[str, Preset] = {}
        for name, (layout, text, params, mult_adds) in published.items():
            reference = {"params": params} if mult_adds is None else {"params": params, "mult_adds": mult_adds}
            table[name] = Preset(
                config={"layout": layout, **{k: list(v) for k, v in _NASNET_A_EXTRA.items()}},
                values=values,
                description=f"{text} (Zoph et al. 2018, Figure 4 cells; no auxiliary head)",
                reference=reference,
            )
        return table
