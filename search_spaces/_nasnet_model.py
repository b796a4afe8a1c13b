"""The static NASNet network built from decoded specs: cells of plain PyTorch layers.

What each cell does, following the reference implementation (TF-slim ``nasnet_utils.NasNetABaseCell``):

1. state 0 = ReLU -> 1x1 conv -> BN of ``h_i`` (always, to the cell's ``filters``);
2. state 1 = ``h_{i-1}``, adjusted only if needed: ReLU -> factorised reduction when it is twice the size of
   ``h_i``, else ReLU -> 1x1 conv -> BN when its width differs from ``filters``; a cell without an
   ``h_{i-1}`` (the first after the stem convolution) uses ``h_i`` itself, unadjusted;
3. each block adds its two operations; in a reduction cell the operations that read state 0 or 1 have
   stride 2, those reading blocks stride 1;
4. the output concatenates the cell's output states; a state whose size or width differs from the blocks'
   goes through a factorised reduction (stride 2 if the size differs, else 1x1 conv -> BN) first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces._nasnet_ops import ActConvNorm, FactorizedReduce, make_op
from search_spaces._nasnet_specs import CellPlacement, CellSpec

__all__ = ["NASNet", "NASNetCell", "StemSpec"]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


@dataclass(frozen=True)
class StemSpec:
    """The stem convolution: ``imagenet`` is 3x3 stride 2 without padding, ``cifar`` 3x3 stride 1 "same"."""

    kind: str
    in_channels: int
    out_channels: int

    @property
    def stride(self) -> int:
        return 2 if self.kind == "imagenet" else 1

    @property
    def padding(self) -> int:
        return 0 if self.kind == "imagenet" else 1


class NASNetCell(nn.Module):
    """One normal or reduction cell with its input adjustments and output concatenation."""

    ops: nn.ModuleList
    fit_output: nn.ModuleList

    def __init__(
        self,
        spec: CellSpec,
        *,
        in_channels: int,
        prev_channels: int | None,
        prev_is_larger: bool,
        filters: int,
        reduction: bool,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.spec = spec
        f = filters
        self.adjust_input = ActConvNorm(in_channels, f, 1, norm_layer=norm_layer, act_layer=act_layer)
        if prev_channels is None:  # h_{i-1} is h_i itself, unadjusted
            self.adjust_prev: nn.Module = nn.Identity()
            state1_channels = in_channels
        elif prev_is_larger:
            self.adjust_prev = nn.Sequential(act_layer(), FactorizedReduce(prev_channels, f, 2, norm_layer=norm_layer))
            state1_channels = f
        elif prev_channels != f:
            self.adjust_prev = ActConvNorm(prev_channels, f, 1, norm_layer=norm_layer, act_layer=act_layer)
            state1_channels = f
        else:
            self.adjust_prev = nn.Identity()
            state1_channels = f
        channels = [f, state1_channels] + [f] * len(spec.blocks)
        # Only the cell inputs are at the input resolution; block outputs are at the output resolution.
        at_input_size = [True, True] + [False] * len(spec.blocks)

        ops: list[nn.Module] = []
        for block in spec.blocks:
            for state, op in zip(block.inputs, block.ops):
                stride = 2 if reduction and at_input_size[state] else 1
                ops.append(make_op(op, channels[state], f, stride, norm_layer=norm_layer, act_layer=act_layer))
        self.ops = nn.ModuleList(ops)
        self.block_inputs: tuple[tuple[int, int], ...] = tuple(b.inputs for b in spec.blocks)

        self.concat: tuple[int, ...] = spec.concat_states()
        fits: list[nn.Module] = []
        for state in self.concat:
            if reduction and at_input_size[state]:
                fits.append(FactorizedReduce(channels[state], f, 2, norm_layer=norm_layer))
            elif channels[state] != f:
                fits.append(FactorizedReduce(channels[state], f, 1, norm_layer=norm_layer))
            else:
                fits.append(nn.Identity())
        self.fit_output = nn.ModuleList(fits)
        self.out_channels = f * len(self.concat)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.adjust_input(x), self.adjust_prev(prev)]
        for b, (i0, i1) in enumerate(self.block_inputs):
            states.append(self.ops[2 * b](states[i0]) + self.ops[2 * b + 1](states[i1]))
        outputs = [fit(states[s]) for s, fit in zip(self.concat, self.fit_output)]
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]


class NASNet(nn.Module):
    """Stem, the placed cells, then ReLU -> global average pooling -> dropout -> linear classifier."""

    cells: nn.ModuleDict

    def __init__(
        self,
        stem: StemSpec,
        placements: Sequence[CellPlacement],
        cells: dict[str, CellSpec],
        num_classes: int,
        dropout: float = 0.0,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(stem.in_channels, stem.out_channels, 3, stem.stride, stem.padding, bias=False),
            norm_layer(stem.out_channels),
        )
        # Width and resolution level (number of halvings) of every feature map, stem output first.
        widths = [stem.out_channels]
        levels = [0]
        built: dict[str, nn.Module] = {}
        wiring: list[tuple[int, int]] = []
        for p in placements:
            prev = p.input if p.prev is None else p.prev
            if levels[p.input] - levels[prev] not in (0, 1):
                raise ValueError(f"cell {p.name}: h_(i-1) is not at the size of h_i or twice it")
            cell = NASNetCell(
                cells[p.kind],
                in_channels=widths[p.input],
                prev_channels=None if p.prev is None else widths[prev],
                prev_is_larger=levels[p.input] != levels[prev],
                filters=p.filters,
                reduction=p.kind == "reduce",
                norm_layer=norm_layer,
                act_layer=act_layer,
            )
            built[p.name] = cell
            wiring.append((p.input, prev))
            widths.append(cell.out_channels)
            levels.append(levels[p.input] + (1 if p.kind == "reduce" else 0))
        self.cells = nn.ModuleDict(built)
        self.wiring: tuple[tuple[int, int], ...] = tuple(wiring)
        self.num_features = widths[-1]
        self.head_act = act_layer()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for cell, (i, p) in zip(self.cells.values(), self.wiring):
            features.append(cell(features[i], features[p]))
        y = torch.flatten(self.pool(self.head_act(features[-1])), 1)
        return self.classifier(self.dropout(y))
