"""The suite every search space passes: every preset and 20 random architectures build, run forward,
are counted by the profilers, export to ONNX and match in ONNX Runtime. Every space with a supernet
(``supernet.supported_spaces()``) also passes extraction parity: 20 random architectures of its ``small``
layout, and every preset whose architecture fits that layout (NASNet-A's cells), give in eval mode the
supernet's outputs from the extracted static network (fed the input resized to the architecture's resolution,
the supernet the raw input); the presets and a few random ones then go through the checks above.

Large presets run at a reduced input size (their networks are resolution-agnostic). The default run uses the
TorchScript exporter for speed (~0.3 s a model); the `slow` variant exports every case with the default
(dynamo) exporter, as `nas export` does.
"""

from __future__ import annotations

import functools
import json

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


def _small_config(space_name: str, preset: str | None) -> dict[str, object]:
    """The small layout, with a preset's other configuration keys (e.g. NASNet-A's extra concatenated states)."""
    extra = {} if preset is None else get_space_class(space_name).preset_table()[preset].config
    return {**extra, "layout": "small"}


def _supernet_cases() -> list[object]:
    cases = []
    for space_name in supported_spaces():
        cases += [pytest.param(space_name, None, seed, id=f"{space_name}:small:{seed}") for seed in range(_RANDOM_PER_SPACE)]
        for name, table in get_space_class(space_name).preset_table().items():
            try:  # presets whose architecture has the small layout's labels (NASNet-A's cells do)
                get_space(space_name, _small_config(space_name, name)).make_arch(table.values)
            except ValueError:
                continue
            cases.append(pytest.param(space_name, name, 0, id=f"{space_name}:{name}@small"))
    return cases


@functools.cache
def _supernet(space_name: str, config_json: str) -> Supernet:
    """A supernet with distinct BN parameters and statistics everywhere (so a wrong copy shows), in eval mode."""
    net = build_supernet(get_space(space_name, json.loads(config_json)), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    return net.eval()


@pytest.mark.parametrize(("space_name", "preset", "seed"), _supernet_cases())
def test_supernet_extraction_parity(space_name: str, preset: str | None, seed: int, tmp_path) -> None:
    net = _supernet(space_name, json.dumps(_small_config(space_name, preset), sort_keys=True))
    space = net.space
    if preset is None:
        arch = space.sample(np.random.default_rng(seed))
    else:
        arch = space.make_arch(get_space_class(space_name).preset_table()[preset].values)
    model = net.extract(arch)
    assert not model.training
    assert model.state_dict().keys() == space.build(arch).state_dict().keys()
    shape = space.input_shape(2, arch)  # at the architecture's own resolution
    x = torch.randn(space.input_shape(2), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = net(x, arch)
        got = model(resize_input(x, shape[-1]))
        assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
    if preset is not None or seed < _EXPORTED_PER_SUPERNET:  # an ordinary static model: count it, export it
        _check(model, shape, space.num_classes, tmp_path, "torchscript")
