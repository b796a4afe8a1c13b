"""The suite every search space passes: every preset and 20 random architectures build, run forward,
are counted by the profilers, export to ONNX and match in ONNX Runtime. Every space with a supernet
(``supernet.supported_spaces()``) also passes: 20 random architectures of its small layout extracted from the
supernet equal the supernet's forward (the extracted network fed the input resized to the architecture's
resolution, the supernet the raw input), and a few extracted networks go through the checks above.

Large presets run at a reduced input size (their networks are resolution-agnostic). The default run uses the
TorchScript exporter for speed (~0.3 s a model); the `slow` variant exports every case with the default
(dynamo) exporter, as `nas export` does.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from profilers import count_all, export_onnx
from search_spaces import get_space, get_space_class, list_spaces
from supernet import Supernet, build_supernet, resize_input, supported_spaces

torch.set_num_threads(1)

# Presets run at this side at most in the default suite.
_MAX_SIDE = 64
_RANDOM_PER_SPACE = 20
_EXPORTED_PER_SUPERNET = 4  # of the random architectures, those whose extracted network is also exported
_SLOW_PRESETS = {"nasnet-a-large", "efficientnet-b5", "efficientnet-b6", "efficientnet-b7", "shufflenetv2-2.0x"}


def _preset_cases() -> list[object]:
    cases = []
    for space in list_spaces():
        for name in get_space_class(space).preset_table():
            marks = [pytest.mark.slow] if name in _SLOW_PRESETS else []
            cases.append(pytest.param(space, name, marks=marks, id=f"{space}:{name}"))
    return cases


def _random_cases() -> list[object]:
    return [
        pytest.param(space, seed, id=f"{space}:small:{seed}") for space in list_spaces() for seed in range(_RANDOM_PER_SPACE)
    ]


def _warm_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Give batch norms statistics of real activations, so outputs are not vanishingly small."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _check(model: torch.nn.Module, shape: tuple[int, ...], num_classes: int, tmp_path, exporter: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    _warm_bn(model, torch.randn((16, *shape[1:]), generator=gen))
    with torch.no_grad():
        expected = model(x)
    assert expected.shape == (shape[0], num_classes)
    assert torch.isfinite(expected).all()

    counts = count_all(model, x[:1])
    assert counts.params == sum(p.numel() for p in model.parameters())
    assert counts.mult_adds > 0 and counts.memory_access_bytes > counts.params * 4  # weights are read at least once
    assert counts.elementwise_ops > 0

    path = tmp_path / "model.onnx"
    info = export_onnx(model, x, path, exporter=exporter)
    assert info.exporter == exporter
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):
        got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with torch.no_grad():
            ref = model(batch).numpy()
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got - ref).max() <= 1e-4 * scale


@pytest.mark.parametrize(("space_name", "preset"), _preset_cases())
def test_every_preset(space_name: str, preset: str, tmp_path) -> None:
    space, arch = get_space_class(space_name).preset(preset)
    model = space.build(arch).eval()
    _, c, h, _ = space.input_shape(2, arch)
    side = min(h, _MAX_SIDE if space_name != "nasnet" else 96)
    _check(model, (2, c, side, side), space.num_classes, tmp_path, "torchscript")


@pytest.mark.parametrize(("space_name", "seed"), _random_cases())
def test_random_small_architectures(space_name: str, seed: int, tmp_path) -> None:
    space = get_space(space_name, {"layout": "small"})
    arch = space.sample(np.random.default_rng(seed))
    assert space.validate(arch) == arch
    model = space.build(arch).eval()
    _check(model, space.input_shape(2, arch), space.num_classes, tmp_path, "torchscript")


@pytest.mark.slow
@pytest.mark.parametrize(("space_name", "seed"), _random_cases())
def test_random_small_architectures_dynamo_export(space_name: str, seed: int, tmp_path) -> None:
    space = get_space(space_name, {"layout": "small"})
    model = space.build(space.sample(np.random.default_rng(seed))).eval()
    _check(model, space.input_shape(2, space.sample(np.random.default_rng(seed))), space.num_classes, tmp_path, "dynamo")


def _supernet_cases() -> list[object]:
    return [
        pytest.param(space, seed, id=f"{space}:small:{seed}")
        for space in supported_spaces()
        for seed in range(_RANDOM_PER_SPACE)
    ]


@pytest.fixture(scope="module")
def small_supernets() -> dict[str, Supernet]:
    """One supernet per space with one, small layout, its batch norms given distinct statistics."""
    nets = {}
    gen = torch.Generator().manual_seed(0)
    for name in supported_spaces():
        net = build_supernet(get_space(name, {"layout": "small"}), seed=0)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    assert m.running_mean is not None and m.running_var is not None
                    m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        nets[name] = net.eval()
    return nets


@pytest.mark.parametrize(("space_name", "seed"), _supernet_cases())
def test_supernet_extraction(small_supernets, space_name: str, seed: int, tmp_path) -> None:
    net = small_supernets[space_name]
    space = net.space
    arch = space.sample(np.random.default_rng(seed))
    x = torch.randn(space.input_shape(2), generator=torch.Generator().manual_seed(seed))
    model = net.extract(arch)
    assert not model.training
    assert model.state_dict().keys() == space.build(arch).state_dict().keys()
    with torch.no_grad():
        expected = net(x, arch)
        got = model(resize_input(x, space.resolution(arch)))
    assert (got - expected).abs().max().item() <= 1e-5
    if seed < _EXPORTED_PER_SUPERNET:
        _check(model, space.input_shape(2, arch), space.num_classes, tmp_path, "torchscript")
