"""Latency blocks: every space's network as a chain of measurable blocks (no timing here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from profilers import count_mult_adds, count_params
from search_spaces import SearchSpace, get_space
from search_spaces._blocks import NETWORK_INPUT, BlockChain, LatencyBlock, run_blocks, strided
from search_spaces.efficientnet import EfficientNetSpace

torch.set_num_threads(1)

SPACES = ["shufflenet", "nasnet", "efficientnet"]


def _small(name: str) -> SearchSpace:
    return get_space(name, {"layout": "small"})


def _check_chain(blocks: list[LatencyBlock], input_shape: tuple[int, ...]) -> None:
    for index, block in enumerate(blocks):
        for ref, shape in zip(block.sources, block.input_shapes):
            assert NETWORK_INPUT <= ref < index, f"block {index} reads output {ref}"
            assert shape == (input_shape if ref == NETWORK_INPUT else blocks[ref].output_shape)


@pytest.mark.parametrize("name", SPACES)
def test_blocks_cover_the_network(name: str) -> None:
    """Chained, the blocks give the network's output shape, its parameters and its mult-adds."""
    space = _small(name)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = space.sample(rng)
        blocks = space.latency_blocks(arch)
        shape = space.input_shape(2, arch)
        _check_chain(blocks, shape[1:])
        model = space.build(arch).eval()
        x = torch.randn(shape)
        with torch.no_grad():
            assert run_blocks(blocks, x).shape == model(x).shape == (2, space.num_classes)
        assert sum(count_params(b.build()) for b in blocks) == count_params(model)
        block_mult_adds = sum(
            count_mult_adds(b.build().eval(), tuple(torch.randn(1, *s) for s in b.input_shapes)) for b in blocks
        )
        assert block_mult_adds == count_mult_adds(model, torch.randn(1, *shape[1:]))


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("nasnet", {"layout": "mobile", "input_size": 40, "filters": 8, "cells_per_stack": 1}),
        ("nasnet", {"layout": "large", "input_size": 40, "filters": 8, "cells_per_stack": 2, "stem_multiplier": 1.0}),
        ("shufflenet", {"layout": "shufflenetv2-0.5x", "input_size": 40, "num_classes": 7}),
    ],
)
def test_blocks_follow_other_layouts(name: str, config: dict[str, object]) -> None:
    """ImageNet stems, stem pooling and NASNet-A Large's skipped reduction input chain too."""
    space = get_space(name, config)
    arch = space.sample(3)
    blocks = space.latency_blocks(arch)
    _check_chain(blocks, space.input_shape(1, arch)[1:])
    x = torch.randn(space.input_shape(1, arch))
    with torch.no_grad():
        assert run_blocks(blocks, x).shape == space.build(arch).eval()(x).shape
    assert sum(count_params(b.build()) for b in blocks) == count_params(space.build(arch))


def test_shufflenet_keys_name_the_configuration() -> None:
    space = _small("shufflenet")
    arch = space.make_arch({f"layer_{i}": "shuffle5" for i in range(7)} | {"layer_0": "xception"})
    blocks = space.latency_blocks(arch)
    assert [b.key for b in blocks[:3]] == [
        "shufflenet/stem_c1-16_s1",
        "shufflenet/xception_c16-32_s2",
        "shufflenet/shuffle5_c32-32_s1",
    ]
    assert blocks[1].signature == "shufflenet/xception_c16-32_s2@16x16x16"
    assert blocks[-1].key == "shufflenet/head_c128-256_n10" and blocks[-1].output_shape == (10,)
    assert len(blocks) == 1 + 7 + 1


@pytest.mark.parametrize("name", SPACES)
def test_keys_are_stable(name: str) -> None:
    """The same architecture gives the same signatures, from another space instance too."""
    arch = _small(name).sample(5)
    first = [b.signature for b in _small(name).latency_blocks(arch)]
    again = [b.signature for b in _small(name).latency_blocks(arch)]
    assert first == again and all(s.startswith(f"{name}/") for s in first)


def test_one_changed_choice_changes_only_its_blocks() -> None:
    shufflenet = _small("shufflenet")
    arch = shufflenet.sample(1)
    other = shufflenet.make_arch({**arch, "layer_3": "xception" if arch["layer_3"] != "xception" else "shuffle3"})
    a = [b.signature for b in shufflenet.latency_blocks(arch)]
    b = [b.signature for b in shufflenet.latency_blocks(other)]
    assert [i for i, (x, y) in enumerate(zip(a, b)) if x != y] == [4]  # stem is block 0, layer_3 block 4

    efficientnet = _small("efficientnet")
    assert isinstance(efficientnet, EfficientNetSpace)
    arch = efficientnet.compound(1, efficientnet.coefficients()[0])
    kernel = 5 if arch["stage3_kernel"] != 5 else 7
    other = efficientnet.make_arch({**arch, "stage3_kernel": kernel})
    a = [b.signature for b in efficientnet.latency_blocks(arch)]
    b = [b.signature for b in efficientnet.latency_blocks(other)]
    changed = [x for x, y in zip(a, b) if x != y]
    assert changed and all("_k" in s for s in changed) and len(a) == len(b)
    assert len(changed) == len(efficientnet.network_spec(arch).stage_blocks()[2])


def test_nasnet_shares_operations_across_architectures() -> None:
    """Cells are split into operations: different architectures share most blocks."""
    space = _small("nasnet")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(10)]
    per_arch = [{b.signature for b in space.latency_blocks(a)} for a in archs]
    union = set().union(*per_arch)
    assert len(union) < 0.5 * sum(len(s) for s in per_arch)
    blocks = space.latency_blocks(archs[0])
    adds = [b for b in blocks if b.key == "nasnet/add"]
    assert len(adds) == 5 * 5  # five cells of five blocks
    assert all(len(b.input_shapes) == 2 and b.input_shapes[0] == b.input_shapes[1] for b in adds)
    cats = [b for b in blocks if b.key.startswith("nasnet/concat")]
    assert all(b.output_shape[0] == sum(s[0] for s in b.input_shapes) for b in cats)


def test_block_chain_rejects_bad_references() -> None:
    chain = BlockChain((3, 8, 8))
    with pytest.raises(ValueError, match="does not exist yet"):
        chain.add("x/a", torch.nn.Identity, (3, 8, 8), sources=(0,))
    with pytest.raises(ValueError, match="without '@'"):
        LatencyBlock("x@y", torch.nn.Identity, ((3, 8, 8),), (NETWORK_INPUT,), (3, 8, 8))
    with pytest.raises(ValueError, match="one source per input shape"):
        LatencyBlock("x/a", torch.nn.Identity, ((3, 8, 8),), (NETWORK_INPUT, NETWORK_INPUT), (3, 8, 8))
    assert [strided(s, 2) for s in (1, 2, 3, 16, 17)] == [1, 1, 2, 8, 9]


def test_run_blocks_checks_declared_shapes() -> None:
    chain = BlockChain((3, 8, 8))
    chain.add("x/conv", lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (5, 8, 8), sources=(NETWORK_INPUT,))
    with pytest.raises(ValueError, match="declared"):
        run_blocks(chain.blocks, torch.randn(1, 3, 8, 8))
