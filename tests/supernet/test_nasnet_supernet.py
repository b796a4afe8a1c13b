"""NASNet supernet <-> static network: same outputs, the path's weights only, drop path."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces import get_space
from search_spaces.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCE, NASNet, NASNetSpace
from supernet import NASNetSupernet, Supernet, TrainConfig, build_supernet, supported_spaces
from supernet._optim import make_optimizer

torch.set_num_threads(1)

# Two blocks, five operations (every family with and without weights), 8x8 inputs: builds in milliseconds.
TINY = {
    "layout": "small",
    "input_size": 8,
    "filters": 4,
    "num_blocks": 2,
    "operations": ["identity", "sep_conv_3x3", "avg_pool_3x3", "max_pool_3x3", "conv_1x3_3x1"],
}
# NASNet-A's published cells at the small layout's sizes (with the reference's extra concatenated states).
NASNET_A_SMALL = {"layout": "small", "normal_extra_concat": [1], "reduce_extra_concat": [3]}


def _space(config: dict[str, object]) -> NASNetSpace:
    space = get_space("nasnet", config)
    assert isinstance(space, NASNetSpace)
    return space


def _randomise(net: nn.Module, seed: int) -> None:
    """Distinct BN affine parameters and running statistics everywhere, so a wrong copy shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                assert m.running_mean is not None and m.running_var is not None
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


def _parity(net: Supernet, arch: object, x: torch.Tensor) -> float:
    model = net.extract(arch)  # type: ignore[arg-type]
    assert isinstance(model, NASNet) and not model.training
    with torch.no_grad():
        return (model(x) - net(x, arch)).abs().max().item()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_supernet() -> NASNetSupernet:
    net = build_supernet(_space({"layout": "small"}), seed=0)
    assert isinstance(net, NASNetSupernet)
    _randomise(net, seed=1)
    return net.eval()


@pytest.mark.parametrize("seed", range(20))
def test_extract_equals_supernet_forward_small(small_supernet, seed):
    arch = small_supernet.space.sample(np.random.default_rng(seed))
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    assert _parity(small_supernet, arch, x) <= 1e-5


@pytest.mark.parametrize(
    "config",
    [
        NASNET_A_SMALL,
        # The ImageNet stem (two reduction cells after a strided stem) and NASNet-A Large's skip of the
        # reduction cell's input, both at small sizes.
        {**NASNET_A_SMALL, "stem": "imagenet", "filters": 8, "stem_multiplier": 0.5, "input_size": 32},
        {**NASNET_A_SMALL, "skip_reduction_layer_input": True},
    ],
    ids=["small", "imagenet-stem", "skip-reduction-input"],
)
def test_extract_equals_supernet_forward_nasnet_a(config):
    space = _space(config)
    net = build_supernet(space, seed=0)
    _randomise(net, seed=3)
    net.eval()
    arch = space.arch_from_cells(NASNET_A_NORMAL, NASNET_A_REDUCE)
    model = net.extract(arch)
    assert space.cell_text(arch) == {"normal": NASNET_A_NORMAL, "reduce": NASNET_A_REDUCE}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in space.build(arch).parameters())
    x = torch.randn(2, *space.input_shape()[1:], generator=torch.Generator().manual_seed(0))
    assert _parity(net, arch, x) <= 1e-5


def _two_state_reduction() -> dict[str, object]:
    """Cells of five blocks: the normal cell concatenates one state (its last block), the reduction cell two
    (blocks 2 and 4), so the reduction cell's output (2 x 16 filters) has the width of the next reduction
    cell (32 filters), which then reads it as h_(i-1) without adjustment, as the static network does."""
    inputs = {"normal": [(0, 1), (2, 2), (3, 3), (4, 4), (5, 5)], "reduce": [(0, 1), (2, 2), (3, 3), (3, 3), (5, 5)]}
    values: dict[str, object] = {}
    for kind, blocks in inputs.items():
        for b, pair in enumerate(blocks):
            for side in (0, 1):
                values[f"{kind}/b{b}/in{side}"] = pair[side]
                values[f"{kind}/b{b}/op{side}"] = "sep_conv_3x3" if side else "max_pool_3x3"
    return values


def test_unadjusted_same_width_input_and_key_names(small_supernet):
    space = small_supernet.space
    arch = space.make_arch(_two_state_reduction())
    assert space.decode(arch)["reduce"].concat_states() == (4, 6)
    model = space.build(arch)
    assert isinstance(model.cells["reduction_1"].adjust_prev, nn.Identity)
    sub = small_supernet.subnet_state_dict(arch)
    static = model.state_dict()
    assert set(sub) == set(static)
    assert all(sub[k].shape == v.shape for k, v in static.items())
    # A candidate is the static operation under a shorter name; grouped weights are the chosen groups.
    supernet_state = small_supernet.state_dict()
    assert torch.equal(
        sub["cells.cell_0.ops.1.1.weight"], supernet_state["cells.cell_0.candidates.0.1.sep_conv_3x3.1.weight"]
    )
    assert torch.equal(sub["classifier.weight"], supernet_state["classifier.weights.6"])
    expected = torch.cat([supernet_state[f"cells.cell_1.adjust_input.weights.{g}"] for g in (4, 6)], dim=1)
    assert torch.equal(sub["cells.cell_1.adjust_input.1.weight"], expected)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert _parity(small_supernet, arch, x) <= 1e-5


def _on_path(net: NASNetSupernet, arch: object) -> tuple[set[str], dict[str, tuple[int, ...]]]:
    """Prefixes of the candidates a path uses, and the groups each grouped layer reads."""
    specs = net.space.decode(arch)  # type: ignore[arg-type]
    candidates: set[str] = set()
    groups: dict[str, tuple[int, ...]] = {}
    outputs: list[tuple[int, ...]] = [(0,)]
    for (name, cell), (i, p), kind in zip(net.cells.items(), net.wiring, net.kinds):
        spec = specs[kind]
        for b, block in enumerate(spec.blocks):
            candidates |= {
                f"cells.{name}.candidates.{b}.{cell.variant_of[s]}.{op}." for s, op in zip(block.inputs, block.ops)
            }
        candidates |= {f"cells.{name}.fit.{s}." for s in spec.concat_states() if s < 2}
        groups[f"cells.{name}.adjust_input"] = outputs[i]
        if cell.adjust_prev is not None and not cell._prev_is_identity(outputs[p]):
            groups[f"cells.{name}.adjust_prev"] = outputs[p]
        outputs.append(spec.concat_states())
    groups["classifier"] = outputs[-1]
    return candidates, groups


def test_gradients_reach_only_the_chosen_path():
    space = _space(TINY)
    net = build_supernet(space, seed=0).train()
    assert isinstance(net, NASNetSupernet)
    for seed in range(3):
        net.zero_grad(set_to_none=True)
        arch = space.sample(np.random.default_rng(seed))
        x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
        # In train mode (batch statistics) the path and the extracted network compute the same function.
        static = net.extract(arch).train()
        y = net(x, arch)
        assert (y - static(x)).abs().max().item() <= 1e-5
        y.square().sum().backward()
        candidates, groups = _on_path(net, arch)
        for name, param in net.named_parameters():
            if name.startswith("stem.") or name == "classifier.bias":
                expected = True
            elif ".candidates." in name or ".fit." in name:
                expected = any(name.startswith(c) for c in candidates)
            else:  # a grouped layer: its norm when used at all, its weight groups when concatenated
                layer = name.split(".weights")[0].split(".norm")[0]
                if ".norm." in name:
                    expected = layer in groups
                else:
                    expected = layer in groups and int(name.rsplit(".", 1)[1]) in groups[layer]
            assert (param.grad is not None) == expected, name


def test_architecture_is_an_argument_and_validated():
    space = _space(TINY)
    net = build_supernet(space, seed=0).eval()
    a, b = space.sample(np.random.default_rng(0)), space.sample(np.random.default_rng(1))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ya, yb, ya2 = net(x, a), net(x, b), net(x, dict(a))
    assert not torch.allclose(ya, yb)
    assert torch.equal(ya, ya2)
    bad = {**a.values, "normal/b1/in0": 7}
    with pytest.raises(ValueError, match=r"normal/b1/in0.*7"):
        net(x, bad)
    with pytest.raises(ValueError, match=r"normal/b1/in0.*7"):
        net.extract(bad)
    with pytest.raises(ValueError, match="needs a NASNetSpace"):
        NASNetSupernet(get_space("shufflenet", {"layout": "small"}))


def test_factory_and_candidate_layout():
    space = _space(TINY)
    net = build_supernet(space, seed=0)
    assert isinstance(net, NASNetSupernet) and "nasnet" in supported_spaces()
    cell = net.cells["cell_0"]
    # Block b holds every operation once per variant (in_channels, stride) among the states it may read. In
    # the first cell, h_(i-1) is the unadjusted stem output (wider than the filters): a variant of its own.
    assert cell.variant_of == (0, 1, 0, 0)
    assert [sorted(per_block.keys()) for per_block in cell.candidates] == [["0", "1"], ["0", "1"]]
    assert cell.candidate(1, 2, "sep_conv_3x3") is cell.candidate(1, 0, "sep_conv_3x3")  # same shape: shared
    assert cell.candidate(1, 1, "sep_conv_3x3") is not cell.candidate(1, 0, "sep_conv_3x3")
    reduction = net.cells["reduction_0"]  # strides on its two inputs only
    assert reduction.variant_of == (0, 0, 1, 1)
    assert [sorted(per_block.keys()) for per_block in reduction.candidates] == [["0"], ["0", "1"]]
    assert reduction.candidate(1, 0, "conv_1x3_3x1") is reduction.candidate(1, 1, "conv_1x3_3x1")
    assert reduction.candidate(1, 2, "conv_1x3_3x1") is not reduction.candidate(1, 0, "conv_1x3_3x1")
    assert isinstance(cell.candidate(1, 2, "identity"), nn.Identity)  # nothing to adjust: no weights
    assert not isinstance(reduction.candidate(0, 0, "identity"), nn.Identity)  # strided 1x1 conv
    assert set(cell.candidates[0]["0"].keys()) == set(TINY["operations"])  # type: ignore[arg-type,index]
    a, b = build_supernet(space, seed=4).state_dict(), build_supernet(space, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_drop_path_only_in_training_and_never_on_identity():
    space = _space(TINY)
    net = build_supernet(space, seed=0)
    values = dict(space.sample(np.random.default_rng(0)).values)
    identity_only = {k: ("identity" if "/op" in k else v) for k, v in values.items()}
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(x, values, drop_path=0.5), net(x, values))
        net.train()
        torch.manual_seed(0)
        plain = net(x, values)
        torch.manual_seed(0)
        dropped = net(x, values, drop_path=0.5)
        assert not torch.allclose(plain, dropped)
        # identity everywhere: nothing to drop, so the same function and no random draws
        torch.manual_seed(0)
        before = torch.get_rng_state()
        assert torch.equal(net(x, identity_only, drop_path=0.5), net(x, identity_only))
        assert torch.equal(torch.get_rng_state(), before)
        torch.manual_seed(1)
        again = net(x, values, drop_path=0.5)
        torch.manual_seed(0)
        assert torch.equal(net(x, values, drop_path=0.5), dropped) and not torch.equal(again, dropped)
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\), got 1.0"):
        net(x, values, drop_path=1.0)


def _sgd_steps(
    model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], batches: list[tuple[torch.Tensor, torch.Tensor]]
) -> list[float]:
    """Losses of ``len(batches)`` steps as ``train_supernet`` takes them (default recipe: Nesterov SGD,
    weight decay on weights only, label smoothing, global-norm clipping over the parameters with a gradient)."""
    cfg = TrainConfig()
    optimizer = make_optimizer(model, cfg)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    params = list(model.parameters())
    losses = []
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(forward(x), y)
        loss.backward()
        assert cfg.grad_clip is not None
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.grad_clip)
        optimizer.step()
        losses.append(float(loss))
    return losses


def _reuses_a_module(net: NASNetSupernet, arch: object) -> bool:
    specs = net.space.decode(arch)  # type: ignore[arg-type]
    for cell, kind in zip(net.cells.values(), net.kinds):
        for b, block in enumerate(specs[kind].blocks):
            first, second = (cell.candidate(b, s, op) for s, op in zip(block.inputs, block.ops))
            if first is second and any(True for _ in first.parameters()):
                return True
    return False


@pytest.mark.parametrize("seed", [0, 1])
def test_one_path_trains_as_the_static_network_alone(seed):
    """No training bug on the supernet side: one fixed path trained through the supernet takes the very steps
    the extracted static network takes when trained alone (same data, same optimiser, same recipe), so its
    loss curve and final weights match. What makes uniform single-path training of this space hard is the
    variation between paths, not the path itself (tests/benchmarks/test_nasnet_supernet_benchmarks.py)."""
    space = _space(TINY)
    net = build_supernet(space, seed=seed).train()
    rng = np.random.default_rng(seed)
    # A block whose two sides apply one operation to states of one variant runs one shared module twice,
    # where the static network has two modules: its gradients add up. Take a path without such a block.
    arch = next(a for a in (space.sample(rng) for _ in range(200)) if not _reuses_a_module(net, a))
    static = net.extract(arch).train()
    gen = torch.Generator().manual_seed(seed)
    batch = (torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen))
    batches = [batch] * 6  # one batch, again and again: a path that trains fits it
    through_supernet = _sgd_steps(net, lambda x: net(x, arch), batches)
    alone = _sgd_steps(static, static, batches)
    assert through_supernet == pytest.approx(alone, rel=1e-4, abs=1e-5)
    assert through_supernet[-1] < through_supernet[0]
    trained = net.extract(arch).state_dict()
    for key, value in static.state_dict().items():
        if value.is_floating_point():
            assert (trained[key] - value).abs().max().item() <= 1e-4, key


def _path_agreement(net: NASNetSupernet, space: NASNetSpace) -> float:
    """Median correlation, over pairs of 8 random paths, of the last cell's pooled output (channel groups summed)."""
    last = net.cells[list(net.cells)[-1]]
    outputs: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for seed in range(8):
            net(x, space.sample(np.random.default_rng(seed)))
    hook.remove()
    pooled = [o.mean(dim=(2, 3)).reshape(16, -1, last.filters).sum(dim=1).flatten() for o in outputs]
    pairs = [torch.corrcoef(torch.stack([pooled[i], pooled[j]]))[0, 1].item() for i in range(8) for j in range(i + 1, 8)]
    return float(np.median(pairs))


def test_aligned_initialisation_makes_paths_agree_at_the_start():
    """Why uniform training learns at all (tests/benchmarks/test_nasnet_supernet_benchmarks.py): from the aligned
    start, random paths compute nearly the same features; from the plain random one they are unrelated."""
    space = _space(TINY)
    aligned = build_supernet(space, seed=0).train()
    plain = build_supernet(space, seed=0, aligned_init=None).train()
    assert _path_agreement(aligned, space) > 0.5
    assert abs(_path_agreement(plain, space)) < 0.25
    # Every convolution of the cells is the channel-preserving kernel plus 0.1x the plain initialisation.
    plain_state = plain.state_dict()
    for name, value in aligned.state_dict().items():
        if name.startswith("cells.") and value.dim() == 4:
            out, inp, kh, kw = value.shape
            delta = torch.zeros_like(value)
            delta[torch.arange(out), torch.arange(out) % inp, kh // 2, kw // 2] = 1.0
            assert torch.allclose(value, delta + 0.1 * plain_state[name]), name
        elif not name.startswith("cells."):
            assert torch.equal(value, plain_state[name]), name
    # The static networks extracted from it are exact all the same.
    arch = space.sample(np.random.default_rng(3))
    assert _parity(aligned.eval(), arch, torch.randn(2, 1, 8, 8)) <= 1e-5
    with pytest.raises(ValueError, match="aligned_init must be a non-negative"):
        build_supernet(space, seed=0, aligned_init=-0.5)
