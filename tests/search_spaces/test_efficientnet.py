"""The `efficientnet` space: B0-B7 against the paper, compound-scaling constraint, sampling, replay, messages."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from profilers import count_mult_adds, count_params
from search_spaces import Architecture, get_space, list_spaces, preset
from search_spaces._compound import Coefficients, round_resolution, valid_coefficients
from search_spaces._efficientnet_spec import StageSpec, decode_stage, round_filters, round_repeats
from search_spaces._mbconv import MBConv, SqueezeExcite
from search_spaces.efficientnet import COEFFICIENTS, EfficientNetSpace

torch.set_num_threads(1)

# Tan & Le 2019, table 2: parameters and mult-adds ("FLOPS") of B0-B7 at their own resolution.
PAPER = {
    "efficientnet-b0": (5.3e6, 0.39e9),
    "efficientnet-b1": (7.8e6, 0.70e9),
    "efficientnet-b2": (9.2e6, 1.0e9),
    "efficientnet-b3": (12e6, 1.8e9),
    "efficientnet-b4": (19e6, 4.2e9),
    "efficientnet-b5": (30e6, 9.9e9),
    "efficientnet-b6": (43e6, 19e9),
    "efficientnet-b7": (66e6, 37e9),
}

# torchvision's published GFLOPS (mult-adds) where its weights use the paper's resolution (B0 and B1 are checked
# in their own tests below; torchvision's B2 runs at 288, not comparable).
TORCHVISION_GFLOPS = {
    "efficientnet-b3": 1.83,
    "efficientnet-b4": 4.39,
    "efficientnet-b5": 10.27,
    "efficientnet-b6": 19.07,
    "efficientnet-b7": 37.75,
}


def _space(name: str) -> tuple[EfficientNetSpace, Architecture]:
    space, arch = preset("efficientnet", name)
    assert isinstance(space, EfficientNetSpace)
    return space, arch


@pytest.fixture(scope="module")
def small() -> EfficientNetSpace:
    space = get_space("efficientnet", {"layout": "small"})
    assert isinstance(space, EfficientNetSpace)
    return space


@pytest.fixture(scope="module")
def imagenet() -> EfficientNetSpace:
    space = get_space("efficientnet")
    assert isinstance(space, EfficientNetSpace)
    return space


def _mult_adds(space: EfficientNetSpace, arch: Architecture) -> int:
    return count_mult_adds(space.build(arch), torch.zeros(space.input_shape(1, arch)))


# presets -------------------------------------------------------------------------------------------
def test_registered_with_both_layouts() -> None:
    assert "efficientnet" in list_spaces()
    assert set(EfficientNetSpace.layouts) == {"imagenet", "small"}
    assert list(EfficientNetSpace.preset_table()) == [f"efficientnet-b{i}" for i in range(8)]
    for name, spec in EfficientNetSpace.preset_table().items():
        assert tuple(spec.reference.values()) == PAPER[name]


def test_b0_matches_the_paper_in_params_mult_adds_and_layer_table() -> None:
    space, arch = _space("efficientnet-b0")
    assert arch["scaling"] == "compound" and arch["phi"] == 0 and space.resolution(arch) == 224
    model = space.build(arch)
    # 5,288,548 trainable parameters: the reference implementation's count (the paper: 5.3M).
    assert count_params(model) == 5_288_548
    mult_adds = _mult_adds(space, arch)
    # Convolutions and linear layers only (batch norm is element-wise work): the paper's 0.39B to its two
    # digits, and within 1% of torchvision's 0.386 GFLOPS.
    assert round(mult_adds / 1e9, 2) == 0.39, mult_adds
    assert mult_adds == pytest.approx(0.386e9, rel=0.01), mult_adds
    spec = space.network_spec(arch)
    assert [(s.repeats, s.kernel, s.stride, s.expansion, s.channels) for s in spec.stages] == [
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    ]
    assert (spec.stem_channels, spec.head_channels) == (32, 1280)
    first = model.stages[0][0]
    assert isinstance(first, MBConv) and "expand" not in first.body._modules  # MBConv1
    se = first.body.se
    assert isinstance(se, SqueezeExcite) and se.reduce.out_channels == 8  # 0.25 x 32 block input channels
    assert sum(len(stage) for stage in model.stages) == 16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("name", [f"efficientnet-b{i}" for i in range(1, 8)])
def test_b1_to_b7_parameter_counts_match_the_paper(name: str) -> None:
    space, arch = _space(name)
    params = count_params(space.build(arch))
    # The paper rounds to 2 significant digits (B2: 9.2M for 9.11M): within 2%.
    assert params == pytest.approx(PAPER[name][0], rel=0.02), params


def test_b1_mult_adds_match_the_paper_at_240() -> None:
    space, arch = _space("efficientnet-b1")
    assert space.input_shape(1, arch) == (1, 3, 240, 240)
    mult_adds = _mult_adds(space, arch)
    # 0.687B: torchvision's 0.69 GFLOPS to its two digits; 1.9% under the paper's rounded 0.70B.
    assert round(mult_adds / 1e9, 2) == 0.69, mult_adds
    assert mult_adds == pytest.approx(0.70e9, rel=0.02), mult_adds


@pytest.mark.slow
@pytest.mark.parametrize("name", [f"efficientnet-b{i}" for i in range(2, 8)])
def test_b2_to_b7_mult_adds_match_the_paper(name: str) -> None:
    space, arch = _space(name)
    mult_adds = _mult_adds(space, arch)
    # The paper's figures are rounder than its layer tables: B4's gives 4.39B at 380 against the paper's 4.2B.
    assert mult_adds == pytest.approx(PAPER[name][1], rel=0.05), mult_adds
    if name in TORCHVISION_GFLOPS:  # the same resolution as torchvision's weights: its figure to two decimals
        assert round(mult_adds / 1e9, 2) == TORCHVISION_GFLOPS[name], mult_adds


def test_published_coefficients_are_recorded_as_custom_points(imagenet: EfficientNetSpace) -> None:
    published = {1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260), 3: (1.2, 1.4, 300), 4: (1.4, 1.8, 380)}
    published |= {5: (1.6, 2.2, 456), 6: (1.8, 2.6, 528), 7: (2.0, 3.1, 600)}
    for phi, (width, depth, side) in published.items():
        space, arch = _space(f"efficientnet-b{phi}")
        assert (arch["scaling"], arch["phi"], arch[COEFFICIENTS]) == ("custom", phi, "1.2,1.1,1.15")
        assert (arch["width_mult"], arch["depth_mult"], space.resolution(arch)) == (width, depth, side)
        imagenet.validate(arch)  # the dropout in the preset config changes nothing of the choices
    _, b7 = _space("efficientnet-b7")
    spec = imagenet.network_spec(b7)
    assert (spec.stem_channels, spec.head_channels) == (64, 2560)
    assert [s.repeats for s in spec.stages] == [4, 7, 7, 10, 10, 13, 4]


def test_preset_dropout_follows_the_reference() -> None:
    rates = [_space(f"efficientnet-b{i}")[0].build(_space(f"efficientnet-b{i}")[1]).dropout.p for i in range(8)]
    assert rates == [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]


# compound scaling --------------------------------------------------------------------------------
def test_rounding_follows_the_reference() -> None:
    assert [round_filters(c, 1.1) for c in (32, 16, 24, 40, 80, 112, 192, 320, 1280)] == [
        32, 16, 24, 48, 88, 120, 208, 352, 1408,
    ]  # fmt: skip
    assert round_filters(16, 0.5) == 8 and round_filters(3, 1.0) == 8  # never below the divisor
    assert round_filters(36, 1.0, divisor=8) == 40  # 32 < 0.9 x 36: one divisor more
    assert [round_repeats(r, 1.2) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert round_resolution(224 * 1.15**2, 8) == 296 and round_resolution(3, 8) == 8
    assert Coefficients(1.2, 1.1, 1.15).product == pytest.approx(1.92, abs=1e-3)


def test_compound_points_record_their_multipliers(imagenet: EfficientNetSpace) -> None:
    arch = imagenet.compound(2, "1.2,1.1,1.15")
    assert (arch["width_mult"], arch["depth_mult"], arch["resolution"]) == (1.21, 1.44, 296)
    assert imagenet.resolution(arch) == 296 and imagenet.input_shape(2, arch) == (2, 3, 296, 296)
    b0 = _space("efficientnet-b0")[1]
    assert imagenet.compound(0, "1.2,1.1,1.15") == b0
    other = imagenet.compound(0, Coefficients(1.0, 1.2, 1.2))  # phi = 0 is B0 whatever the triple
    assert other != b0 and imagenet.network_spec(other) == imagenet.network_spec(b0)
    assert all(t.within(2.0, 0.1) for t in imagenet.coefficients())
    assert Coefficients(1.2, 1.1, 1.15) in imagenet.coefficients()


def test_sample_never_breaks_the_constraint(imagenet: EfficientNetSpace, small: EfficientNetSpace) -> None:
    rng = np.random.default_rng(0)
    for space in (imagenet, small):
        seen = set()
        for _ in range(200):
            arch = space.sample(rng)
            triple = Coefficients.parse(str(arch[COEFFICIENTS]))
            assert abs(triple.product - 2.0) <= 0.1 + 1e-9
            assert arch["scaling"] == "compound" and space.validate(arch) == arch
            seen.add(arch[COEFFICIENTS])
        assert len(seen) > len(space.coefficients()) // 2  # the draw covers the valid triples


def test_sample_is_reproducible_from_a_seed(small: EfficientNetSpace) -> None:
    assert small.sample(7) == small.sample(7)
    assert len({small.sample(seed).arch_id for seed in range(20)}) == 20


def test_optuna_random_sampler_only_proposes_valid_points(small: EfficientNetSpace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs = []

    def objective(trial: optuna.trial.Trial) -> float:
        arch = small.suggest(trial)
        archs.append(arch)
        return float(arch["width_mult"])

    study.optimize(objective, n_trials=30)
    assert len(archs) == 30 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for arch in archs:
        assert Coefficients.parse(str(arch[COEFFICIENTS])).within(2.0, 0.1)
        assert small.validate(arch) == arch
    # Every trial is replayed from its recorded architecture.
    for trial, arch in zip(study.trials, archs, strict=True):
        assert small.suggest(optuna.trial.FixedTrial(dict(arch))) == arch
        assert trial.params[COEFFICIENTS] == arch[COEFFICIENTS]


def test_fixed_trial_replays_an_architecture(small: EfficientNetSpace, imagenet: EfficientNetSpace) -> None:
    for seed in range(10):
        arch = small.sample(seed)
        assert small.suggest(optuna.trial.FixedTrial(dict(arch.values))) == arch
    b0 = _space("efficientnet-b0")[1]
    assert imagenet.suggest(optuna.trial.FixedTrial(dict(b0))) == b0
    # A hand-set point is not a point of the search: its replay fails instead of building something else.
    b3 = _space("efficientnet-b3")[1]
    with pytest.raises(ValueError, match="'custom' not in"):
        imagenet.suggest(optuna.trial.FixedTrial(dict(b3)))


def test_json_round_trip(small: EfficientNetSpace) -> None:
    for arch in (small.sample(3), _space("efficientnet-b5")[1]):
        again = Architecture.from_json(arch.to_json())
        assert again == arch and again.arch_id == arch.arch_id
        assert json.loads(arch.to_json())["values"]["scaling"] in ("compound", "custom")
    arch = small.sample(3)
    assert count_params(small.build(Architecture.from_json(arch.to_json()))) == count_params(small.build(arch))


# validation messages -----------------------------------------------------------------------------
def _with(arch: Architecture, **changes: object) -> dict[str, object]:
    return {**arch.values, **changes}


def test_validate_explains_a_broken_constraint(imagenet: EfficientNetSpace) -> None:
    b0 = _space("efficientnet-b0")[1]
    bad = _with(b0, alpha_beta_gamma="1.4,1.2,1.3")  # 1.4 * 1.44 * 1.69 = 3.41
    with pytest.raises(
        ValueError, match=r"alpha\*beta\^2\*gamma\^2 = 3\.407, must be within 0\.1 of 2 \(off by 1\.407"
    ):
        imagenet.validate(bad)
    with pytest.raises(ValueError, match=r"alpha\*beta\^2\*gamma\^2 = 1\.21, must be within 0\.1 of 2"):
        imagenet.validate(_with(b0, alpha_beta_gamma="1,1.1,1"))


def test_validate_explains_a_bad_triple(imagenet: EfficientNetSpace) -> None:
    b0 = _space("efficientnet-b0")[1]
    with pytest.raises(ValueError, match=r"alpha 1\.23 is not on alpha_grid; allowed: \[1\.0, 1\.1"):
        imagenet.validate(_with(b0, alpha_beta_gamma="1.23,1.1,1.15"))
    with pytest.raises(ValueError, match=r"gamma 0\.9 is not on gamma_grid"):
        imagenet.validate(_with(b0, alpha_beta_gamma="1.2,1.1,0.9"))
    with pytest.raises(ValueError, match=r"not 'alpha,beta,gamma' \(three numbers\)"):
        imagenet.validate(_with(b0, alpha_beta_gamma="1.2;1.1;1.15"))
    with pytest.raises(ValueError, match=r"spell it '1\.2,1\.1,1\.15'"):
        imagenet.validate(_with(b0, alpha_beta_gamma="1.20,1.10,1.150"))
    with pytest.raises(ValueError, match=r"label 'alpha_beta_gamma': value 1\.2 is not allowed; allowed: \["):
        imagenet.validate(_with(b0, alpha_beta_gamma=1.2))


def test_validate_explains_a_compound_mismatch(imagenet: EfficientNetSpace) -> None:
    arch = imagenet.compound(2, "1.2,1.1,1.15")
    with pytest.raises(ValueError, match=r"'width_mult': value 1\.1 does not follow .* beta\^phi = 1\.1\^2 = 1\.21"):
        imagenet.validate(_with(arch, width_mult=1.1))
    with pytest.raises(ValueError, match=r"'depth_mult': value 1\.2 .* alpha\^phi = 1\.2\^2 = 1\.44; set depth"):
        imagenet.validate(_with(arch, depth_mult=1.2))
    with pytest.raises(ValueError, match=r"'resolution': value 300 .* 224\*1\.15\^2 rounded to a multiple of 8 = 296"):
        imagenet.validate(_with(arch, resolution=300))
    # The same multipliers are fine in a hand-set point, and B3 is not a compound point.
    assert imagenet.validate(_with(arch, scaling="custom", resolution=300))["resolution"] == 300
    with pytest.raises(ValueError, match="or scaling to 'custom' for a hand-set point"):
        imagenet.validate(_with(_space("efficientnet-b3")[1], scaling="compound"))


def test_validate_names_label_value_and_options(small: EfficientNetSpace) -> None:
    arch = small.sample(0)
    with pytest.raises(ValueError, match=r"'stage2_kernel': value 4 is not allowed; allowed: \[3, 5, 7\]"):
        small.validate(_with(arch, stage2_kernel=4))
    with pytest.raises(ValueError, match=r"'stage1_expansion': value 2 is not allowed; allowed: \[1, 3, 4, 6\]"):
        small.validate(_with(arch, stage1_expansion=2))
    with pytest.raises(ValueError, match=r"'stage3_se': value 1 is not allowed; allowed: \[False, True\]"):
        small.validate(_with(arch, stage3_se=1))
    with pytest.raises(
        ValueError, match=r"'scaling': value 'manual' is not allowed; allowed: \['compound', 'custom'\]"
    ):
        small.validate(_with(arch, scaling="manual"))
    with pytest.raises(ValueError, match=r"'phi': value 5 is not allowed; allowed: \[0, 1, 2\]"):
        small.validate(_with(arch, phi=5))
    with pytest.raises(ValueError, match=r"'stage9_kernel' is not in space 'efficientnet'"):
        small.validate(_with(arch, stage9_kernel=3))
    missing = dict(arch)
    del missing["resolution"]
    with pytest.raises(ValueError, match=r"label 'resolution' is missing"):
        small.validate(missing)
    with pytest.raises(ValueError, match=r"unknown stage label\(s\) \['stage5_kernel'\]"):
        small.compound(0, small.coefficients()[0], {"stage5_kernel": 3})


# small layout and building -------------------------------------------------------------------------
def test_small_layout_random_architectures_build_and_run(small: EfficientNetSpace) -> None:
    assert small.input_shape(4) == (4, 1, 16, 16)
    rng = np.random.default_rng(1)
    sides = set()
    for _ in range(20):
        arch = small.sample(rng)
        shape = small.input_shape(2, arch)
        sides.add(shape[-1])
        assert 16 <= shape[-1] <= 32
        model = small.build(arch).eval()
        with torch.no_grad():
            out = model(torch.randn(shape))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        assert count_params(model) < 500_000
    assert len(sides) > 1  # the resolution is searched


def test_small_model_trains_end_to_end(small: EfficientNetSpace) -> None:
    arch = small.compound(2, small.coefficients()[-1])
    model = small.build(arch)
    out = model(torch.randn(4, *small.input_shape(4, arch)[1:]))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_every_stage_choice_changes_the_built_blocks(small: EfficientNetSpace) -> None:
    base = small.compound(0, small.coefficients()[0])
    model = small.build(_with(base, stage3_kernel=7, stage3_expansion=3, stage3_se=False))
    for block in model.stages[2]:
        assert isinstance(block, MBConv)
        assert block.body.depthwise.conv.kernel_size == (7, 7)
        assert block.body.depthwise.conv.out_channels == 3 * block.body.expand.conv.in_channels
        assert "se" not in block.body._modules
    assert all("se" in b.body._modules for b in small.build(base).stages[2])


def test_depth_and_width_multipliers_scale_the_network(small: EfficientNetSpace) -> None:
    wide = max(small.coefficients(), key=lambda t: t.beta)
    deep = max(small.coefficients(), key=lambda t: t.alpha)
    base = small.network_spec(small.compound(0, wide))
    assert small.network_spec(small.compound(2, wide)).head_channels > base.head_channels
    assert sum(s.repeats for s in small.network_spec(small.compound(2, deep)).stages) > sum(
        s.repeats for s in base.stages
    )


# encoding and configuration ---------------------------------------------------------------------
def test_stage_strings_decode_and_encode() -> None:
    spec = decode_stage("mb_r2_k3_s2_e6_c24_se0.25")
    assert spec == StageSpec(repeats=2, kernel=3, stride=2, expansion=6, channels=24, se_ratio=0.25)
    assert decode_stage(spec.encode()) == spec
    assert decode_stage("mb_c16_e1_s1_k3_r1").se_ratio == 0.0  # any order, SE optional
    for text, message in [
        ("ir_r1_k3_s1_e1_c16", r"block type 'ir' is unknown; allowed: 'mb'"),
        ("mb_r1_k3_s1_e1", r"missing c \(channels\)"),
        ("mb_r1_k4_s1_e1_c16", r"kernel must be an odd integer"),
        ("mb_r1_k3_s3_e1_c16", r"stride must be 1 or 2, got 3"),
        ("mb_r1_k3_s1_e1_c16_x2", r"token 'x2' is not understood"),
        ("mb_r1.5_k3_s1_e1_c16", r"repeats must be an integer"),
        ("mb_r1_r2_k3_s1_e1_c16", r"token 'r' is given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            decode_stage(text)


def test_config_errors_name_the_key_and_what_is_allowed() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"stages": ("mb_r1_k3_s1_e1",)}, r"stages: .*stages\[0\]: stage 'mb_r1_k3_s1_e1': missing c"),
        ({"alpha_grid": (1.0,), "beta_grid": (1.0,), "gamma_grid": (1.0,)}, r"no \(alpha, beta, gamma\) of the grids"),
        ({"alpha_grid": (0.9, 1.2)}, r"alpha_grid.0: Input should be greater than or equal to 1"),
        ({"kernel_options": (3, 4)}, r"kernels must be odd"),
        ({"phi_grid": (0, 1, 1)}, r"values must be distinct"),
        ({"se_ratio": 0.5}, r"stages\[0\] has se ratio 0\.25; allowed: 0 or se_ratio \(0\.5\)"),
        ({"width": 2}, r"unknown key 'width'; allowed keys: layout, input_size"),
        ({"layout": "tiny"}, r"unknown layout 'tiny' for space 'efficientnet'; allowed: imagenet, small"),
    ]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            get_space("efficientnet", config)


def test_grid_and_tolerance_are_configurable() -> None:
    space = get_space("efficientnet", {"layout": "small", "constraint_tolerance": 0.2, "phi_grid": (0, 1)})
    assert isinstance(space, EfficientNetSpace)
    loose = space.coefficients()
    assert len(loose) > len(EfficientNetSpace({"layout": "small"}).coefficients())
    assert all(abs(t.product - 2.0) <= 0.2 + 1e-9 for t in loose)
    assert space.choices()["phi"] == (0, 1)
    assert valid_coefficients((1.0,), (1.0,), (1.4, 1.45), 2.0, 0.05) == (Coefficients(1.0, 1.0, 1.4),)


def test_describe_lists_choices_and_presets(small: EfficientNetSpace) -> None:
    info = small.describe()
    labels = list(info["choices"])
    assert labels[:6] == ["scaling", "phi", COEFFICIENTS, "width_mult", "depth_mult", "resolution"]
    assert labels[6:9] == ["stage1_kernel", "stage1_expansion", "stage1_se"] and len(labels) == 6 + 3 * 4
    assert info["choices"][COEFFICIENTS] == [t.label for t in small.coefficients()]
    assert "efficientnet-b7" in info["presets"]
