"""The weight-sharing supernet of space ``nasnet`` (NASNet cells; ENAS / Bender et al. 2018 style).

What is shared, and how a path runs:

* **Candidate operations.** In every placed cell, block ``b`` holds one module of every operation of the
  space's operation set for every *variant* of the states it may read (the cell's two inputs and blocks
  ``0 .. b-1``): ``cells.{cell}.candidates.{b}.{variant}.{op}``. A variant is one (input channels, stride)
  pair, so an operation has separate weights only where the input's shape or stride makes it differ: a
  reduction cell strides on its two inputs only (two variants), the first cell's ``h_{i-1}`` may be wider
  (its own variant), and every other state of a cell is one variant. The two sides of a block share the
  modules too. A path that applies one operation to two states of one variant in one block runs that module
  twice (the static network has two copies; extraction copies it into both). Modules are built by the space's
  own ``make_op``, so a candidate's state dict is the static layer's.
* **Input adjustments and classifier.** A cell's output width depends on how many states it concatenates;
  the layers reading it hold one weight group per state slot and use the groups of the states concatenated
  (``supernet._nasnet_parts``). When a same-size ``h_{i-1}`` already has the cell's width, the static network
  has no adjustment (``nn.Identity``) and neither does the path here.
* **Forward.** ``forward(x, arch)`` decodes the two cells and runs, in every cell, the two chosen operations
  on the two chosen states of each block, then concatenates the states no block read (plus the layout's
  ``extra_concat``) through the same output fits as the static ``NASNetCell``.

Scheduled drop path (NASNet): ``forward(x, arch, drop_path=p)`` drops whole samples of every operation
output but ``identity`` (the reference skips its ``none`` operation) with probability ``p * (k + 1) / K`` in
the ``k``-th of ``K`` placed cells -- the reference's layer ratio, so the last cell drops at ``p`` -- in
training mode only. The trainer raises ``p`` linearly over training (``TrainConfig.drop_path_prob``).

Path samplers on this space: ``UniformSampler`` draws every label independently, so the normal and the
reduction cell are drawn independently. ``FairSampler`` is strict over operation labels and balanced over
input labels: its group size is the largest option count (the operation count, 13 by default), so within a
group every operation of every block side trains exactly once, while an input label of ``m`` options takes
each input ``n // m`` or ``n // m + 1`` times. A weight here is per (input variant, operation): in a normal
cell past the first, where every state is one variant, each operation module of a block trains exactly
twice per group (once per side); where the inputs fall in several variants, fair in expectation only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from search_spaces.nasnet import FactorizedReduce, NASNetSpace, make_op
from supernet._base import Supernet
from supernet._nasnet_parts import GroupedActConvNorm, GroupedLinear, GroupedReduce, drop_path

if TYPE_CHECKING:
    from search_spaces import Architecture, SearchSpace
    from search_spaces.nasnet import CellPlacement, CellSpec

__all__ = ["NASNetCellSupernet", "NASNetSupernet"]

Groups = tuple[int, ...]


@dataclass(frozen=True)
class _Feature:
    """A feature map of the network: ``num_groups`` channel groups of ``group_width``, at ``level`` halvings."""

    group_width: int
    num_groups: int
    level: int


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{key}": value for key, value in state.items()}


class NASNetCellSupernet(nn.Module):
    """Every candidate of one placed cell: adjustments, operations per (block, input variant), output fits."""

    def __init__(
        self,
        placement: CellPlacement,
        inp: _Feature,
        prev: _Feature | None,
        *,
        num_blocks: int,
        operations: Sequence[str],
    ) -> None:
        super().__init__()
        f = placement.filters
        self.filters = f
        reduction = placement.kind == "reduce"
        self.adjust_input = GroupedActConvNorm(inp.group_width, inp.num_groups, f)
        self.adjust_prev: GroupedActConvNorm | GroupedReduce | None
        if prev is None:  # h_{i-1} is h_i itself, unadjusted: its width must not depend on the architecture
            if inp.num_groups != 1:
                raise ValueError(f"cell {placement.name}: without h_(i-1) its input must have a fixed width")
            self.adjust_prev = None
            state1_channels = inp.group_width
        elif inp.level - prev.level not in (0, 1):
            raise ValueError(f"cell {placement.name}: h_(i-1) is not at the size of h_i or twice it")
        elif prev.level != inp.level:
            self.adjust_prev = GroupedReduce(prev.group_width, prev.num_groups, f)
            state1_channels = f
        else:
            self.adjust_prev = GroupedActConvNorm(prev.group_width, prev.num_groups, f)
            state1_channels = f
        channels = [f, state1_channels] + [f] * num_blocks
        # An operation differs between two states only when their channel count or stride does: a "variant"
        # is one (in_channels, stride) pair, numbered in order of the first state that has it.
        shapes = [(channels[s], 2 if reduction and s < 2 else 1) for s in range(2 + num_blocks)]
        variants = list(dict.fromkeys(shapes))
        self.variant_of: tuple[int, ...] = tuple(variants.index(shape) for shape in shapes)
        candidates = []
        for b in range(num_blocks):
            readable = sorted({self.variant_of[s] for s in range(2 + b)})
            candidates.append(
                nn.ModuleDict(
                    {
                        str(v): nn.ModuleDict({op: make_op(op, variants[v][0], f, variants[v][1]) for op in operations})
                        for v in readable
                    }
                )
            )
        self.candidates = nn.ModuleList(candidates)
        # Output fits of the two cell inputs, used when the cell concatenates them (as NASNetCell.fit_output).
        fits: list[nn.Module] = []
        for state in (0, 1):
            if reduction:
                fits.append(FactorizedReduce(channels[state], f, 2))
            elif channels[state] != f:
                fits.append(FactorizedReduce(channels[state], f, 1))
            else:
                fits.append(nn.Identity())
        self.fit = nn.ModuleList(fits)

    def candidate(self, block: int, state: int, op: str) -> nn.Module:
        """The module of ``op`` in ``block`` when it reads ``state`` (shared by the states of one variant)."""
        per_variant = cast(nn.ModuleDict, self.candidates[block])
        return cast(nn.ModuleDict, per_variant[str(self.variant_of[state])])[op]

    def _prev_is_identity(self, prev_groups: Groups) -> bool:
        """The static cell has no adjustment of a same-size ``h_{i-1}`` that already has its width."""
        adjust = self.adjust_prev
        return adjust is None or (
            isinstance(adjust, GroupedActConvNorm) and len(prev_groups) * adjust.group_width == self.filters
        )

    def forward(
        self,
        x: torch.Tensor,
        prev: torch.Tensor,
        x_groups: Groups,
        prev_groups: Groups,
        spec: CellSpec,
        drop_rate: float = 0.0,
    ) -> torch.Tensor:
        """The cell ``spec`` on ``x`` (groups ``x_groups``) and ``prev``; ``drop_rate`` > 0 only in training."""
        states = [self.adjust_input(x, x_groups)]
        if self._prev_is_identity(prev_groups):
            states.append(prev)
        else:
            assert self.adjust_prev is not None
            states.append(self.adjust_prev(prev, prev_groups))
        for b, block in enumerate(spec.blocks):
            terms = []
            for state, op in zip(block.inputs, block.ops):
                y = self.candidate(b, state, op)(states[state])
                terms.append(drop_path(y, drop_rate) if drop_rate > 0 and op != "identity" else y)
            states.append(terms[0] + terms[1])
        outputs = [self.fit[s](states[s]) if s < 2 else states[s] for s in spec.concat_states()]
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]

    def static_state(self, spec: CellSpec, x_groups: Groups, prev_groups: Groups) -> dict[str, torch.Tensor]:
        """The state dict of the static ``NASNetCell`` of ``spec`` with these input groups, in its key names."""
        state = _prefixed("adjust_input.", self.adjust_input.static_state(x_groups))
        if not self._prev_is_identity(prev_groups):
            assert self.adjust_prev is not None
            state.update(_prefixed("adjust_prev.", self.adjust_prev.static_state(prev_groups)))
        for b, block in enumerate(spec.blocks):
            for side, (s, op) in enumerate(zip(block.inputs, block.ops)):
                state.update(_prefixed(f"ops.{2 * b + side}.", self.candidate(b, s, op).state_dict()))
        for j, s in enumerate(spec.concat_states()):
            if s < 2:
                state.update(_prefixed(f"fit_output.{j}.", self.fit[s].state_dict()))
        return state


def _delta(weight: torch.Tensor) -> torch.Tensor:
    """The channel-preserving kernel of ``weight``'s shape ``(out, in_per_group, kh, kw)``: output channel ``o``
    reads input channel ``o mod in_per_group`` at the kernel's centre, with weight 1."""
    out, inp, kh, kw = weight.shape
    delta = torch.zeros_like(weight)
    index = torch.arange(out)
    delta[index, index % inp, kh // 2, kw // 2] = 1.0
    return delta


def align_cells(cells: nn.Module, noise: float) -> None:
    """Aligned initialisation: every convolution in ``cells`` becomes ``delta + noise * (its random init)``.

    Why: uniform single-path training of a NASNet supernet from the usual random initialisation does not
    learn at all on a small budget (random subnets at chance; see tests/benchmarks/test_nasnet_supernet_benchmarks.py).
    Every state of a cell and every operation's output has its own, arbitrary channel basis, and a new path
    every step combines them differently, so the layers after them see a new basis every step. Started from
    channel-preserving kernels, every operation and every input adjustment begins close to a (scaled) identity
    on the stem's channels: all paths agree at the start, and the noise lets them specialise from there.
    The static network is unchanged (only the supernet's starting point is), so extraction stays exact.
    """
    with torch.no_grad():
        for param in cells.parameters():
            if param.dim() == 4:
                param.copy_(_delta(param) + noise * param)


class NASNetSupernet(Supernet):
    """All cells of a ``NASNetSpace`` with every (block, input, operation) candidate; see the module docstring.

    ``aligned_init`` (default 0.1): the cells' convolutions start as channel-preserving kernels plus this
    multiple of their random initialisation (``align_cells``); ``None`` keeps the plain random initialisation.
    """

    space: NASNetSpace
    supports_drop_path: ClassVar[bool] = True
    OPTIONS: ClassVar[frozenset[str]] = frozenset({"aligned_init"})

    def __init__(self, space: SearchSpace, aligned_init: float | None = 0.1) -> None:
        if not isinstance(space, NASNetSpace):
            raise ValueError(f"NASNetSupernet needs a NASNetSpace, got {type(space).__name__}")
        super().__init__(space)
        self.space = space
        cfg = space.layout
        # Stem, head activation, pooling and dropout are the static network's own modules (any architecture
        # gives the same ones), so their names and shapes match every extracted subnet.
        template = space.build(space.sample(0))
        self.stem = template.stem
        self.head_act = template.head_act
        self.pool = template.pool
        self.dropout = template.dropout
        features = [_Feature(cfg.stem_width, 1, 0)]  # the stem's output: one fixed group
        cells: dict[str, nn.Module] = {}
        wiring: list[tuple[int, int]] = []
        for p in space.placements():
            inp = features[p.input]
            prev = None if p.prev is None else features[p.prev]
            cells[p.name] = NASNetCellSupernet(p, inp, prev, num_blocks=cfg.num_blocks, operations=cfg.operations)
            wiring.append((p.input, p.input if p.prev is None else p.prev))
            features.append(_Feature(p.filters, 2 + cfg.num_blocks, inp.level + (1 if p.kind == "reduce" else 0)))
        self.cells = nn.ModuleDict(cells)
        self.wiring: tuple[tuple[int, int], ...] = tuple(wiring)
        self.kinds: tuple[str, ...] = tuple(p.kind for p in space.placements())
        last = features[-1]
        self.classifier = GroupedLinear(last.group_width, last.num_groups, cfg.num_classes)
        if aligned_init is not None:
            if not aligned_init >= 0.0:  # NaN too
                raise ValueError(f"aligned_init must be a non-negative noise scale or None, got {aligned_init}")
            align_cells(self.cells, aligned_init)

    def forward(
        self, x: torch.Tensor, arch: Architecture | Mapping[str, Any], drop_path: float = 0.0
    ) -> torch.Tensor:
        """Only the path of ``arch``; ``drop_path`` is the rate of the last cell, used in training mode only."""
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        specs = self.space.decode(self.validate(arch))
        rate = drop_path if self.training else 0.0
        features = [self.stem(x)]
        groups: list[Groups] = [(0,)]
        num_cells = len(self.wiring)
        for k, (cell, (i, p), kind) in enumerate(zip(self.cells.values(), self.wiring, self.kinds)):
            spec = specs[kind]
            features.append(cell(features[i], features[p], groups[i], groups[p], spec, rate * (k + 1) / num_cells))
            groups.append(spec.concat_states())
        y = torch.flatten(self.pool(self.head_act(features[-1])), 1)
        return cast(torch.Tensor, self.classifier(self.dropout(y), groups[-1]))

    def subnet_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        specs = self.space.decode(arch)
        state = _prefixed("stem.", self.stem.state_dict())
        groups: list[Groups] = [(0,)]
        for (name, cell), (i, p), kind in zip(self.cells.items(), self.wiring, self.kinds):
            spec = specs[kind]
            cell_state = cast(NASNetCellSupernet, cell).static_state(spec, groups[i], groups[p])
            state.update(_prefixed(f"cells.{name}.", cell_state))
            groups.append(spec.concat_states())
        state.update(_prefixed("classifier.", self.classifier.static_state(groups[-1])))
        return state
