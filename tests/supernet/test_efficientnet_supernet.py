"""EfficientNet supernet <-> static network: same outputs at each architecture's resolution, same keys,
gradients and batch-norm updates confined to the slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profilers import count_all
from search_spaces import Architecture, get_space
from search_spaces.efficientnet import EfficientNet, EfficientNetSpace
from supernet import EfficientNetSupernet, Supernet, build_supernet, resize_input, supported_spaces

torch.set_num_threads(1)

# Two stages on 8x8 inputs (resolutions 8 and 12): for the tests that train or take gradients.
TINY = {
    "layout": "small",
    "input_size": 8,
    "stem_channels": 8,
    "stages": ("mb_r1_k3_s1_e1_c8_se0.25", "mb_r1_k3_s2_e6_c16_se0.25"),
    "head_channels": 32,
    "phi_grid": (0, 1),
}


def _randomise(net: nn.Module, seed: int) -> None:
    """Distinct BN parameters and statistics everywhere, so that a wrong slice shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


@pytest.fixture(scope="module")
def small() -> EfficientNetSupernet:
    net = build_supernet(get_space("efficientnet", {"layout": "small"}), seed=0)
    assert isinstance(net, EfficientNetSupernet)
    _randomise(net, seed=1)
    return net.eval()


@pytest.fixture
def tiny() -> EfficientNetSupernet:
    net = build_supernet(get_space("efficientnet", TINY), seed=0)
    assert isinstance(net, EfficientNetSupernet)
    return net


def _max_diff(net: EfficientNetSupernet, arch: Architecture, seed: int = 0) -> float:
    """Max |extract(arch)(x resized) - supernet(x, arch)| on raw inputs at the layout's base size."""
    space = net.space
    x = torch.randn(4, space.config.in_channels, space.input_size, space.input_size,
                    generator=torch.Generator().manual_seed(seed))
    model = net.extract(arch)
    assert isinstance(model, EfficientNet) and not model.training
    with torch.no_grad():
        expected = net(x, arch)
        got = model(resize_input(x, net.resolution(arch)))
    assert got.shape == expected.shape == (4, space.num_classes)
    return (got - expected).abs().max().item()


def _corner_cases() -> list[object]:
    """Smallest, largest, every kernel and every expansion in every stage, SE all on and all off."""
    space = get_space("efficientnet", {"layout": "small"})
    assert isinstance(space, EfficientNetSpace)
    choices = space.choices()
    cases = [pytest.param("smallest", id="smallest"), pytest.param("largest", id="largest")]
    stages = [label.removesuffix("_kernel") for label in choices if label.endswith("_kernel")]
    for kind in ("kernel", "expansion"):
        options = sorted({o for s in stages for o in choices[f"{s}_{kind}"]})
        for value in options:
            blocks = {f"{s}_{kind}": value for s in stages if value in choices[f"{s}_{kind}"]}
            cases.append(pytest.param(blocks, id=f"{kind}{value}"))
    for on in (False, True):
        cases.append(pytest.param({f"{s}_se": on for s in stages}, id=f"se_{'on' if on else 'off'}"))
    return cases


def test_factory_and_full_size(small):
    assert "efficientnet" in supported_spaces() and isinstance(small, Supernet)
    # every architecture's static weights fit inside the full-size ones, under the same names
    full = small.state_dict()
    for seed in range(5):
        arch = small.space.sample(np.random.default_rng(seed))
        for name, tensor in small.space.build(arch).state_dict().items():
            assert all(a <= b for a, b in zip(tensor.shape, full[name].shape)), name


def test_unknown_option_is_refused():
    space = get_space("efficientnet", TINY)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['kernel_size'\].*allowed: kernel_transform"):
        build_supernet(space, kernel_size=3)
    with pytest.raises(ValueError, match="allowed: none"):
        build_supernet(get_space("shufflenet", {"layout": "small"}), kernel_transform=True)
    with pytest.raises(ValueError, match="needs an EfficientNetSpace"):
        EfficientNetSupernet(get_space("shufflenet", {"layout": "small"}))


@pytest.mark.parametrize("seed", range(20))
def test_extract_equals_supernet_on_resized_input(small, seed):
    arch = small.space.sample(np.random.default_rng(seed))
    assert _max_diff(small, arch, seed) <= 1e-5


@pytest.mark.parametrize("case", _corner_cases())
def test_corner_cases(small, case):
    smallest, largest = small.extreme_architectures()
    if case == "smallest":
        arch = smallest
    elif case == "largest":
        arch = largest
    else:
        arch = small.space.compound(2, "1.1,1.2,1.1", case)  # widest point of the grid at phi 2
    assert _max_diff(small, arch) <= 1e-5


def test_state_dict_keys_match_the_static_network(small):
    for seed in range(5):
        arch = small.space.sample(np.random.default_rng(100 + seed))
        sub = small.subnet_state_dict(arch)
        static = small.space.build(arch).state_dict()
        assert sub.keys() == static.keys()
        assert all(sub[k].shape == static[k].shape for k in static)


def test_smallest_and_largest_bound_random_architectures(small):
    smallest, largest = small.extreme_architectures()
    low, high = small.mult_adds(smallest), small.mult_adds(largest)
    sizes = [small.mult_adds(small.space.sample(np.random.default_rng(s))) for s in range(30)]
    assert low <= min(sizes) and max(sizes) <= high
    assert smallest["phi"] == 0 and not smallest["stage2_se"] and largest["stage2_se"]


@pytest.mark.parametrize("seed", range(3))
def test_mult_adds_agree_with_the_profiler(tiny, seed):
    arch = tiny.space.sample(np.random.default_rng(seed))
    side = tiny.resolution(arch)
    counts = count_all(tiny.extract(arch), torch.zeros(1, 1, side, side))
    # fvcore also counts batch norms; the supernet's count is of convolutions and the classifier only
    layers = [layer.mult_adds for layer in counts.layers if not layer.name.endswith(".norm")]
    assert tiny.mult_adds(arch) == sum(layers)


def test_resolution_is_applied_inside_forward(tiny):
    tiny.eval()
    arch = tiny.space.compound(1, "1,1.1,1.3", None)  # gamma 1.3: 8 -> 12 pixels
    assert tiny.resolution(arch) == 12
    x = torch.randn(2, 1, 8, 8)
    resized = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
    assert torch.equal(resize_input(x, 12), resized)
    with torch.no_grad():
        assert torch.equal(tiny(x, arch), tiny(resized, arch))  # already at 12: used as is


def test_train_mode_matches_and_touches_only_the_slice(tiny):
    """In train mode the supernet equals the extracted network (same dropout draws), updates only the
    sliced BN statistics, and gradients reach only the sliced weights."""
    space = tiny.space
    arch = space.compound(1, "1.1,1.1,1.2", {"stage1_expansion": 1, "stage1_se": False, "stage2_kernel": 5,
                                                "stage2_expansion": 4, "stage2_se": True})
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    model = tiny.extract(arch).train()
    tiny.train()
    torch.manual_seed(3)
    out = tiny(x, arch)
    torch.manual_seed(3)
    expected = model(resize_input(x, tiny.resolution(arch)))
    assert (out - expected).abs().max().item() <= 1e-5
    out.square().mean().backward()

    sub = tiny.subnet_state_dict(arch)
    for name, value in model.state_dict().items():  # statistics updated alike
        if "running" in name or "num_batches" in name:
            assert torch.allclose(sub[name], value, atol=1e-6), name
    mask = _slice_masks(tiny, arch)
    params = dict(tiny.named_parameters())
    for name, tensor in tiny.state_dict().items():
        inside = mask.get(name)
        if inside is None:  # not part of this path: untouched, no gradient
            assert torch.equal(tensor, before[name]), name
            assert name not in params or params[name].grad is None, name
            continue
        if name in params:
            grad = params[name].grad
            assert grad is not None, name
            assert not grad[~inside].any(), name
            assert grad[inside].abs().sum() > 0, name
        elif "running" in name:
            assert torch.equal(tensor[~inside], before[name][~inside]), name


def _slice_masks(net: EfficientNetSupernet, arch: Architecture) -> dict[str, torch.Tensor]:
    """Per supernet tensor used by ``arch``, a boolean mask of the elements its slice takes."""
    probe = build_supernet(net.space, seed=0)
    with torch.no_grad():
        for tensor in probe.state_dict().values():
            tensor.zero_()
        for tensor in probe.subnet_state_dict(arch).values():
            tensor.fill_(1)  # views of the probe's tensors: marks the slice in place
    used = probe.subnet_state_dict(arch)
    return {name: tensor != 0 for name, tensor in probe.state_dict().items() if name in used}


def test_kernel_transform_option():
    space = get_space("efficientnet", TINY)
    plain = build_supernet(space, seed=0).eval()
    transformed = build_supernet(space, seed=0, kernel_transform=True).eval()
    assert transformed.options() == {"kernel_transform": True}
    extra = set(transformed.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("kernel_transforms.") for k in extra)
    arch = space.compound(1, "1,1.1,1.3", {"stage1_kernel": 3, "stage2_kernel": 5})
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(plain(x, arch), transformed(x, arch), atol=1e-6)  # identity matrices at start
        for p in transformed.kernel_transforms.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        assert not torch.allclose(plain(x, arch), transformed(x, arch), atol=1e-4)
    assert _max_diff(transformed, arch) <= 1e-5
    assert all(not k.startswith("kernel_transforms.") for k in transformed.subnet_state_dict(arch))


def test_sandwich_needs_ordered_options():
    net = build_supernet(get_space("shufflenet", {"layout": "small"}))
    with pytest.raises(ValueError, match=r"space 'shufflenet' has no such order.*efficientnet"):
        net.extreme_architectures()
