"""The `shufflenet` space: block table, presets against the ShuffleNetV2 paper, the small layout."""

from __future__ import annotations

import pytest
import torch

from profilers import count_mult_adds
from search_spaces import get_space, preset
from search_spaces.shufflenet import ShuffleNetSpace, decode_blocks


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ShuffleNetV2 paper (Ma et al. 2018), Table 5: parameters of the 224x224, 1000-class networks.
@pytest.mark.parametrize(
    ("name", "published"),
    [("shufflenetv2-0.5x", 1.4e6), ("shufflenetv2-1.0x", 2.3e6), ("shufflenetv2-1.5x", 3.5e6), ("shufflenetv2-2.0x", 7.4e6)],
)
def test_shufflenetv2_parameter_counts_match_the_paper(name: str, published: float) -> None:
    space, arch = preset("shufflenet", name)
    params = _params(space.build(arch))
    # The paper rounds to 0.1M: the count must round to the published figure.
    assert round(params / 1e6, 1) == pytest.approx(published / 1e6), params


# ShuffleNetV2 paper, Table 8: mult-adds ("FLOPs") at 224x224. The 0.5x network counts 40.5M, 1.3% under the
# paper's 41M (two significant figures); the others are within 0.2%.
@pytest.mark.parametrize(
    ("name", "published", "rel"),
    [
        ("shufflenetv2-0.5x", 41e6, 0.015),
        ("shufflenetv2-1.0x", 146e6, 0.01),
        ("shufflenetv2-1.5x", 299e6, 0.01),
        ("shufflenetv2-2.0x", 591e6, 0.01),
    ],
)
def test_shufflenetv2_mult_adds_match_the_paper(name: str, published: float, rel: float) -> None:
    space, arch = preset("shufflenet", name)
    mult_adds = count_mult_adds(space.build(arch), torch.randn(1, 3, 224, 224))
    assert mult_adds == pytest.approx(published, rel=rel), mult_adds


def test_shufflenetv2_1x_block_table_follows_the_paper() -> None:
    space, arch = preset("shufflenet", "shufflenetv2-1.0x")
    blocks = space.decode(arch)
    assert len(blocks) == 16
    assert [b.out_channels for b in blocks if b.stride == 2] == [116, 232, 464]
    assert [i for i, b in enumerate(blocks) if b.stride == 2] == [0, 4, 12]
    assert all(b.kind == "shuffle3" for b in blocks)


def test_spos_layout_has_20_choice_layers_in_4_stages() -> None:
    space, arch = ShuffleNetSpace.preset("spos-imagenet")
    blocks = decode_blocks(space.layout, arch)
    assert len(blocks) == 20 and [b.stride for b in blocks].count(2) == 4
    assert {b.kind for b in blocks} == {"shuffle3", "shuffle5", "shuffle7", "xception"}
    model = space.build(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000)


def test_small_layout_runs_on_16_pixel_inputs() -> None:
    space = get_space("shufflenet", {"layout": "small"})
    assert space.input_shape(4) == (4, 1, 16, 16)
    model = space.build(space.sample(3))
    out = model(torch.randn(4, 1, 16, 16))
    assert out.shape == (4, 10)
    out.sum().backward()  # trainable end to end


def test_every_option_changes_the_built_block() -> None:
    space = get_space("shufflenet", {"layout": "small"})
    base = dict(space.sample(0))
    shapes = set()
    for option in space.choices()["layer_1"]:
        block = space.build({**base, "layer_1": option}).blocks[1]
        shapes.add(tuple(tuple(m.weight.shape) for m in block.modules() if isinstance(m, torch.nn.Conv2d)))
    assert len(shapes) == 4
