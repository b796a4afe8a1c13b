from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from profilers import count_mult_adds, count_params
from search_spaces import Architecture, get_space, list_spaces, preset
from search_spaces._nasnet_model import NASNetCell
from search_spaces._nasnet_ops import NASNET_OPERATIONS, FactorizedReduce
from search_spaces._nasnet_specs import CellSpec, format_cell, parse_cell, plan_cells
from search_spaces.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCE, NASNetSpace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small() -> NASNetSpace:
    space = get_space("nasnet", {"layout": "small"})
    assert isinstance(space, NASNetSpace)
    return space


def _preset(name: str) -> tuple[NASNetSpace, Architecture]:
    space, arch = preset("nasnet", name)
    assert isinstance(space, NASNetSpace)
    return space, arch


def _chain_values(space: NASNetSpace, op: str = "sep_conv_3x3") -> dict[str, object]:
    """Every block reads the previous block twice (block 0 reads h_i twice): only the last block is unused."""
    values: dict[str, object] = {}
    for kind in ("normal", "reduce"):
        for b in range(space.layout.num_blocks):
            state = 0 if b == 0 else 1 + b
            for side in (0, 1):
                values[f"{kind}/b{b}/in{side}"] = state
                values[f"{kind}/b{b}/op{side}"] = op
    return values


def test_registered() -> None:
    assert "nasnet" in list_spaces()


def test_choices_labels_and_options(small: NASNetSpace) -> None:
    choices = small.choices()
    assert list(choices)[:4] == ["normal/b0/in0", "normal/b0/op0", "normal/b0/in1", "normal/b0/op1"]
    assert list(choices)[-1] == "reduce/b4/op1"
    assert len(choices) == 2 * 5 * 4
    assert choices["normal/b0/in0"] == (0, 1)
    assert choices["reduce/b3/in1"] == (0, 1, 2, 3, 4)
    assert choices["normal/b2/op0"] == tuple(NASNET_OPERATIONS)
    assert len(NASNET_OPERATIONS) == 13


@pytest.mark.parametrize(
    ("name", "notation", "rel"),
    [("nasnet-a-mobile", "4 @ 1056", 0.02), ("nasnet-a-large", "6 @ 4032", 0.02), ("nasnet-a-cifar", "6 @ 768", 0.02)],
)
def test_presets_params_match_paper(name: str, notation: str, rel: float) -> None:
    space, arch = _preset(name)
    assert space.notation(arch) == notation
    with torch.device("meta"):  # parameter shapes only: the large network costs no memory or init time
        model = space.build(arch)
    reference = NASNetSpace.preset_table()[name].reference["params"]
    assert count_params(model) == pytest.approx(reference, rel=rel)


@pytest.mark.parametrize("name", ["nasnet-a-mobile", "nasnet-a-cifar"])
def test_presets_build_and_run(name: str) -> None:
    space, arch = _preset(name)
    model = space.build(arch).eval()
    side = 64 if space.layout.stem == "imagenet" else 32  # the mobile network at a reduced size, for speed
    with torch.no_grad():
        out = model(torch.randn(1, 3, side, side))
    assert out.shape == (1, space.num_classes)
    assert torch.isfinite(out).all()


def test_mobile_mult_adds_match_paper() -> None:
    space, arch = _preset("nasnet-a-mobile")
    model = space.build(arch)
    mult_adds = count_mult_adds(model, torch.randn(space.input_shape(1)))
    assert mult_adds == pytest.approx(564e6, rel=0.01)  # the paper's 564M; batch norm is not a mult-add


@pytest.mark.slow
def test_large_mult_adds_match_paper() -> None:
    space, arch = _preset("nasnet-a-large")
    model = space.build(arch)
    mult_adds = count_mult_adds(model, torch.randn(space.input_shape(1)))
    assert mult_adds == pytest.approx(23.8e9, rel=0.01)  # the paper's 23.8B; batch norm is not a mult-add


def test_nasnet_a_cells_structure() -> None:
    space, arch = _preset("nasnet-a-mobile")
    cells = space.decode(arch)
    # The reference's used_hiddenstates: normal outputs h_{i-1} and the 5 blocks, reduction blocks 1..4.
    assert cells["normal"].concat_states() == (1, 2, 3, 4, 5, 6)
    assert cells["reduce"].concat_states() == (3, 4, 5, 6)
    assert space.cell_text(arch) == {"normal": NASNET_A_NORMAL, "reduce": NASNET_A_REDUCE}
    model = space.build(arch)
    assert list(model.cells)[:4] == ["stem0", "stem1", "cell_0", "cell_1"]
    widths = {name: cell.out_channels for name, cell in model.cells.items()}
    assert widths["stem0"] == 4 * 11 and widths["stem1"] == 4 * 22
    assert widths["cell_0"] == 6 * 44 and widths["reduction_0"] == 4 * 88 and widths["cell_11"] == 1056


def test_imagenet_stem_feature_sizes() -> None:
    space, arch = _preset("nasnet-a-mobile")
    model = space.build(arch).eval()
    sizes: dict[str, int] = {}
    hooks = [
        cell.register_forward_hook(lambda _m, _i, out, name=name: sizes.__setitem__(name, out.shape[-1]))
        for name, cell in model.cells.items()
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    # 224 -> 111 (3x3 stride-2 conv, no padding) -> 56 -> 28 -> 14 -> 7
    assert (sizes["stem0"], sizes["stem1"], sizes["cell_0"], sizes["cell_4"], sizes["cell_8"]) == (56, 28, 28, 14, 7)


def test_plan_cells_wiring() -> None:
    mobile = plan_cells(stem="imagenet", cells_per_stack=4, filters=44, num_reductions=2)
    by_name = {p.name: p for p in mobile}
    assert [p.filters for p in mobile[:3]] == [11, 22, 44]
    assert by_name["stem0"].prev is None and by_name["stem1"].prev == 0
    # Feature maps: 0 stem conv, 1 stem0, 2 stem1, 3..6 cell_0..3, 7 reduction_0, 8 cell_4.
    assert (by_name["reduction_0"].input, by_name["reduction_0"].prev) == (6, 5)
    assert (by_name["cell_4"].input, by_name["cell_4"].prev) == (7, 6)
    large = plan_cells(
        stem="imagenet", cells_per_stack=6, filters=168, num_reductions=2, skip_reduction_layer_input=True
    )
    by_name = {p.name: p for p in large}
    # NASNet-A Large: the cell after a reduction reads the reduction cell's own h_{i-1} (cell_4, map 7).
    assert (by_name["reduction_0"].input, by_name["reduction_0"].prev) == (8, 7)
    assert (by_name["cell_6"].input, by_name["cell_6"].prev) == (9, 7)
    assert (by_name["cell_7"].input, by_name["cell_7"].prev) == (10, 9)
    cifar = plan_cells(stem="cifar", cells_per_stack=6, filters=32, num_reductions=2)
    assert cifar[0].prev is None and len(cifar) == 20


def test_random_small_architectures_build_and_run(small: NASNetSpace) -> None:
    rng = np.random.default_rng(0)
    x = torch.randn(2, *small.input_shape()[1:])
    assert x.shape == (2, 1, 16, 16)
    for _ in range(20):
        arch = small.sample(rng)
        assert small.validate(arch) is arch
        model = small.build(arch).eval()
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 10)
        assert model.num_features == small.penultimate_filters(arch)


def test_sample_is_seeded(small: NASNetSpace) -> None:
    assert small.sample(7) == small.sample(7)
    assert small.sample(np.random.default_rng(1)) != small.sample(np.random.default_rng(2))


def test_chain_cell_still_has_an_output(small: NASNetSpace) -> None:
    arch = small.make_arch(_chain_values(small))
    cells = small.decode(arch)
    # h_{i-1} is read by no block and the last block by no later block: both are concatenated.
    assert cells["normal"].concat_states() == (1, 6)
    assert cells["reduce"].concat_states() == (1, 6)
    model = small.build(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 16, 16))
    assert out.shape == (1, 10)
    assert model.num_features == 2 * 8 * 4


def test_unused_cell_input_of_reduction_cell_is_reduced(small: NASNetSpace) -> None:
    values = _chain_values(small, "max_pool_3x3")
    model = small.build(small.make_arch(values)).eval()
    cell = model.cells["reduction_0"]
    assert isinstance(cell, NASNetCell)
    assert isinstance(cell.fit_output[0], FactorizedReduce)  # h_{i-1}, at the input size, halved
    with torch.no_grad():
        assert model(torch.randn(3, 1, 16, 16)).shape == (3, 10)


def test_imagenet_stem_on_small_odd_sizes() -> None:
    space = get_space("nasnet", {"layout": "mobile", "input_size": 33, "filters": 8, "cells_per_stack": 1})
    _, nasnet_a = preset("nasnet", "nasnet-a-mobile")
    arch = Architecture("nasnet", dict(nasnet_a))
    model = space.build(arch).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 33)).shape == (1, 1000)


def test_factorized_reduce_reads_even_and_odd_pixels() -> None:
    layer = FactorizedReduce(1, 2, 2, norm_layer=lambda c: torch.nn.Identity()).eval()
    with torch.no_grad():
        layer.conv1.weight.fill_(1.0)
        layer.conv2.weight.fill_(1.0)
        x = torch.arange(25.0).reshape(1, 1, 5, 5)
        out = layer(x)
    assert out.shape == (1, 2, 3, 3)
    assert torch.equal(out[0, 0], x[0, 0, ::2, ::2])
    odd = torch.zeros(3, 3)
    odd[:2, :2] = x[0, 0, 1::2, 1::2]
    assert torch.equal(out[0, 1], odd)


def test_validate_names_label_value_and_options(small: NASNetSpace) -> None:
    good = dict(small.sample(3))
    with pytest.raises(ValueError, match=r"'normal/b1/in0'.*7.*\[0, 1, 2\]"):
        small.validate({**good, "normal/b1/in0": 7})
    with pytest.raises(ValueError, match=r"'reduce/b0/op1'.*'conv_9x9'.*sep_conv_3x3"):
        small.validate({**good, "reduce/b0/op1": "conv_9x9"})
    with pytest.raises(ValueError, match=r"'normal/b5/in0' is not in space"):
        small.validate({**good, "normal/b5/in0": 0})
    missing = dict(good)
    del missing["reduce/b4/in1"]
    with pytest.raises(ValueError, match=r"'reduce/b4/in1' is missing"):
        small.validate(missing)
    with pytest.raises(ValueError, match="allowed"):
        small.validate({**good, "normal/b0/in0": True})


def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'cells'"):
        get_space("nasnet", {"layout": "small", "cells": 3})
    with pytest.raises(ValueError, match=r"conv_9x9.*allowed"):
        get_space("nasnet", {"layout": "small", "operations": ["identity", "conv_9x9"]})
    with pytest.raises(ValueError, match=r"normal_extra_concat.*\[9\].*allowed"):
        get_space("nasnet", {"layout": "small", "normal_extra_concat": [9]})
    with pytest.raises(ValueError, match="filters must be >= 8"):
        get_space("nasnet", {"layout": "mobile", "filters": 4})
    with pytest.raises(ValueError, match="unknown layout"):
        get_space("nasnet", {"layout": "huge"})


def test_operation_set_is_configurable() -> None:
    space = get_space("nasnet", {"layout": "small", "operations": ["identity", "max_pool_3x3", "conv_1x7_7x1"]})
    assert space.choices()["normal/b0/op0"] == ("identity", "max_pool_3x3", "conv_1x7_7x1")
    rng = np.random.default_rng(5)
    for _ in range(3):
        model = space.build(space.sample(rng)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 16, 16)).shape == (1, 10)


def test_every_operation_builds_in_both_cells(small: NASNetSpace) -> None:
    for op in NASNET_OPERATIONS:
        values = {label: (op if label.split("/")[-1].startswith("op") else 0) for label in small.choices()}
        model = small.build(small.make_arch(values)).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 16, 16)).shape == (1, 10), op


def test_json_round_trip(small: NASNetSpace) -> None:
    arch = small.sample(11)
    again = Architecture.from_json(arch.to_json())
    assert again == arch and again.arch_id == arch.arch_id
    assert small.validate(again) == arch
    assert isinstance(again["normal/b3/in1"], int)


def test_suggest_replays_with_fixed_trial(small: NASNetSpace) -> None:
    arch = small.sample(12)
    assert small.suggest(optuna.trial.FixedTrial(dict(arch.values))) == arch


def test_suggest_through_a_study(small: NASNetSpace) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: list[Architecture] = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(small.suggest(trial))
        return 0.0

    study.optimize(objective, n_trials=3)
    assert all(small.validate(a) for a in seen)


def test_cell_text_round_trip(small: NASNetSpace) -> None:
    arch = small.sample(13)
    text = small.cell_text(arch)
    assert small.arch_from_cells(text["normal"], text["reduce"]) == arch
    blocks = parse_cell(NASNET_A_REDUCE)
    assert format_cell(blocks) == NASNET_A_REDUCE
    with pytest.raises(ValueError, match="block 1"):
        parse_cell("identity(0) + identity(1); identity(0)")
    with pytest.raises(ValueError, match="state 4 is not allowed"):
        CellSpec(parse_cell("identity(0) + identity(4)"))
