"""Supernet <-> static subnet: same outputs, same weights under shorter names, independent copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces import Architecture, get_space
from search_spaces.shufflenet import ShuffleNetV2
from supernet import ShuffleNetSupernet, Supernet, build_supernet, supported_spaces


def _randomise(net: nn.Module, seed: int) -> None:
    """Distinct BN affine parameters and running statistics everywhere, so a wrong copy shows."""
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


def test_factory_builds_the_space_supernet(small_space):
    net = build_supernet(small_space)
    assert isinstance(net, ShuffleNetSupernet) and isinstance(net, Supernet)
    assert net.space is small_space
    assert "shufflenet" in supported_spaces()
    # one ShuffleBlock per option per layer, shared stem/head/classifier
    assert len(net.blocks) == small_space.num_layers()
    for choice in net.blocks:
        assert isinstance(choice, nn.ModuleDict)
        assert list(choice.keys()) == ["shuffle3", "shuffle5", "shuffle7", "xception"]


def test_factory_rejects_a_space_without_supernet():
    class Other:
        name = "no-such-space"

    with pytest.raises(ValueError, match=r"no supernet for space 'no-such-space'; allowed: shufflenet, "):
        build_supernet(Other())  # type: ignore[arg-type]


def test_seeded_init_is_reproducible_and_leaves_global_rng(small_space):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build_supernet(small_space, seed=5), build_supernet(small_space, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    c = build_supernet(small_space, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["stem.0.weight"], sc["stem.0.weight"])


def test_state_dict_names_map_to_the_static_network(small_space):
    net = build_supernet(small_space)
    arch = small_space.make_arch({f"layer_{i}": "shuffle5" if i == 3 else "xception" for i in range(7)})
    sub = net.subnet_state_dict(arch)
    static = small_space.build(arch).state_dict()
    assert set(sub) == set(static)
    assert torch.equal(sub["blocks.3.branch_main.0.weight"], net.state_dict()["blocks.3.shuffle5.branch_main.0.weight"])
    for key, value in static.items():
        assert sub[key].shape == value.shape, key


@pytest.fixture(scope="module")
def small_supernet() -> Supernet:
    net = build_supernet(get_space("shufflenet", {"layout": "small"}), seed=0)
    _randomise(net, seed=1)
    return net.eval()


@pytest.mark.parametrize("seed", range(20))
def test_extract_equals_supernet_forward_small(small_supernet, seed):
    net = small_supernet
    arch = net.space.sample(np.random.default_rng(seed))
    model = net.extract(arch)
    assert isinstance(model, ShuffleNetV2) and not model.training
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        diff = (model(x) - net(x, arch)).abs().max().item()
    assert diff <= 1e-5


def test_extract_equals_supernet_forward_spos_imagenet():
    space = get_space("shufflenet", {"layout": "spos-imagenet"})
    net = build_supernet(space, seed=0)
    _randomise(net, seed=2)
    net.eval()
    arch = space.sample(np.random.default_rng(7))
    model = net.extract(arch)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(x) - net(x, arch)).abs().max().item()
    assert diff <= 1e-5


def test_forward_uses_only_the_sampled_path(tiny_space):
    net = build_supernet(tiny_space)
    arch = tiny_space.make_arch({"layer_0": "shuffle3", "layer_1": "xception", "layer_2": "shuffle7"})
    net(torch.randn(4, 1, 8, 8), arch).sum().backward()
    for name, p in net.named_parameters():
        if name.startswith("blocks."):
            layer, option = name.split(".")[1:3]
            assert (p.grad is not None) == (option == arch[f"layer_{layer}"]), name
        else:
            assert p.grad is not None, name


def test_extract_is_a_deep_copy(tiny_space):
    net = build_supernet(tiny_space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = tiny_space.sample(np.random.default_rng(0))
    model = net.extract(arch).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 1, 8, 8)).sum().backward()
        opt.step()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(model.state_dict()["stem.0.weight"], after["stem.0.weight"])


def test_architecture_is_an_argument_not_state(tiny_space):
    net = build_supernet(tiny_space).eval()
    a = tiny_space.make_arch({"layer_0": "shuffle3", "layer_1": "shuffle3", "layer_2": "shuffle3"})
    b = tiny_space.make_arch({"layer_0": "xception", "layer_1": "shuffle5", "layer_2": "shuffle7"})
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ya, yb, ya2 = net(x, a), net(x, b), net(x, dict(a))
    assert not torch.allclose(ya, yb)
    assert torch.equal(ya, ya2)


def test_invalid_architecture_is_a_value_error(tiny_space):
    net = build_supernet(tiny_space)
    bad = {"layer_0": "shuffle9", "layer_1": "shuffle3", "layer_2": "shuffle3"}
    with pytest.raises(ValueError, match=r"layer_0.*shuffle9"):
        net(torch.randn(1, 1, 8, 8), bad)
    with pytest.raises(ValueError, match=r"layer_0.*shuffle9"):
        net.extract(bad)
    with pytest.raises(ValueError, match="belongs to space"):
        net.extract(Architecture(space="nasnet", values={"layer_0": "shuffle3"}))


def test_supernet_rejects_another_space_class(tiny_space):
    class NotShuffle:
        name = "shufflenet"

    with pytest.raises(ValueError, match="needs a ShuffleNetSpace"):
        ShuffleNetSupernet(NotShuffle())  # type: ignore[arg-type]
