"""A NASNet as latency blocks: the stem, every operation and glue layer of every cell, the head.

A whole cell would be a poor table entry: its ten searched operations make nearly every cell of every
architecture new, so nothing would be shared. The blocks are therefore the cell's parts, in the order
``NASNetCell.forward`` runs them: the input adjustments, each block's two operations and their sum, the
output fits and the concatenation. Operations are keyed by name, widths and stride (their input shape does
the rest), so the same ``sep_conv_3x3`` reading the same state size is measured once for every architecture.
Identities that ``NASNetCell`` leaves as ``nn.Identity`` are no blocks: their inputs pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import nn

from search_spaces._blocks import NETWORK_INPUT, Add, BlockChain, Concat, LatencyBlock, classifier_head, strided
from search_spaces._nasnet_model import StemSpec
from search_spaces._nasnet_ops import NASNET_OPERATIONS, ActConvNorm, FactorizedReduce, make_op
from search_spaces._nasnet_specs import CellPlacement, CellSpec

__all__ = ["nasnet_latency_blocks"]


def nasnet_latency_blocks(
    stem: StemSpec,
    placements: Sequence[CellPlacement],
    cells: dict[str, CellSpec],
    input_size: int,
    num_classes: int,
    dropout: float,
) -> list[LatencyBlock]:
    """The blocks of ``NASNet(stem, placements, cells, num_classes, dropout)`` on ``input_size`` pixel inputs."""
    chain = BlockChain((stem.in_channels, input_size, input_size))
    side = (input_size + 2 * stem.padding - 3) // stem.stride + 1
    features = [
        chain.add(
            f"nasnet/stem_{stem.kind}_c{stem.in_channels}-{stem.out_channels}",
            partial(_stem, stem),
            (stem.out_channels, side, side),
            sources=(NETWORK_INPUT,),
        )
    ]
    levels = [0]  # resolution level (number of halvings) of every feature map, as NASNet tracks them
    for p in placements:
        prev = p.input if p.prev is None else p.prev
        if levels[p.input] - levels[prev] not in (0, 1):
            raise ValueError(f"cell {p.name}: h_(i-1) is not at the size of h_i or twice it")
        features.append(
            _cell_blocks(
                chain,
                cells[p.kind],
                x_ref=features[p.input],
                prev_ref=None if p.prev is None else features[prev],
                prev_is_larger=levels[p.input] != levels[prev],
                filters=p.filters,
                reduction=p.kind == "reduce",
            )
        )
        levels.append(levels[p.input] + (1 if p.kind == "reduce" else 0))
    width = chain.shape(features[-1])[0]
    chain.add(
        f"nasnet/head_c{width}_n{num_classes}",
        partial(_head, width, num_classes, dropout),
        (num_classes,),
        sources=(features[-1],),
    )
    return chain.blocks


def _cell_blocks(
    chain: BlockChain,
    spec: CellSpec,
    *,
    x_ref: int,
    prev_ref: int | None,
    prev_is_larger: bool,
    filters: int,
    reduction: bool,
) -> int:
    """Append the blocks of one ``NASNetCell``; return the reference of its output."""
    f = filters
    in_channels, height, width = chain.shape(x_ref)
    states = [
        chain.add(f"nasnet/adjust_c{in_channels}-{f}", partial(_adjust, in_channels, f), (f, height, width), (x_ref,))
    ]
    if prev_ref is None:  # h_{i-1} is h_i itself, unadjusted
        states.append(x_ref)
        state1_channels = in_channels
    else:
        prev_channels = chain.shape(prev_ref)[0]
        state1_channels = f
        if prev_is_larger:
            key = f"nasnet/adjust_reduce_c{prev_channels}-{f}"
            states.append(chain.add(key, partial(_adjust_reduce, prev_channels, f), (f, height, width), (prev_ref,)))
        elif prev_channels != f:
            key = f"nasnet/adjust_c{prev_channels}-{f}"
            states.append(chain.add(key, partial(_adjust, prev_channels, f), (f, height, width), (prev_ref,)))
        else:
            states.append(prev_ref)
    channels = [f, state1_channels] + [f] * len(spec.blocks)
    at_input_size = [True, True] + [False] * len(spec.blocks)
    out_shape = (f, strided(height, 2), strided(width, 2)) if reduction else (f, height, width)

    for block in spec.blocks:
        terms = []
        for state, op in zip(block.inputs, block.ops):
            stride = 2 if reduction and at_input_size[state] else 1
            c_in = channels[state]
            if NASNET_OPERATIONS[op].family == "identity" and stride == 1 and c_in == f:
                terms.append(states[state])  # nn.Identity in the cell
                continue
            key = f"nasnet/{op}_c{c_in}-{f}_s{stride}"
            terms.append(chain.add(key, partial(make_op, op, c_in, f, stride), out_shape, (states[state],)))
        states.append(chain.add("nasnet/add", Add, out_shape, tuple(terms)))

    outputs = []
    for state in spec.concat_states():
        c_in = channels[state]
        if reduction and at_input_size[state]:
            stride = 2
        elif c_in != f:
            stride = 1
        else:
            outputs.append(states[state])
            continue
        key = f"nasnet/fit_c{c_in}-{f}_s{stride}"
        outputs.append(chain.add(key, partial(FactorizedReduce, c_in, f, stride), out_shape, (states[state],)))
    if len(outputs) == 1:
        return outputs[0]
    concat_shape = (f * len(outputs), *out_shape[1:])
    return chain.add(f"nasnet/concat{len(outputs)}", Concat, concat_shape, tuple(outputs))


def _stem(stem: StemSpec) -> nn.Module:
    """The layers of ``NASNet.stem``."""
    return nn.Sequential(
        nn.Conv2d(stem.in_channels, stem.out_channels, 3, stem.stride, stem.padding, bias=False),
        nn.BatchNorm2d(stem.out_channels),
    )


def _adjust(in_channels: int, filters: int) -> nn.Module:
    """ReLU -> 1x1 conv -> BN: a cell's adjustment of an input of another width."""
    return ActConvNorm(in_channels, filters, 1)


def _adjust_reduce(in_channels: int, filters: int) -> nn.Module:
    """ReLU -> factorised reduction: a cell's adjustment of an ``h_{i-1}`` twice the size of ``h_i``."""
    return nn.Sequential(nn.ReLU(), FactorizedReduce(in_channels, filters, 2))


def _head(width: int, num_classes: int, dropout: float) -> nn.Module:
    """ReLU -> global average pooling -> dropout -> linear classifier, as ``NASNet.forward`` ends."""
    return classifier_head([nn.ReLU()], width, num_classes, dropout)
