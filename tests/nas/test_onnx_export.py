"""ONNX export and its check in ONNX Runtime, on tiny models made here."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from nas.export.check import verify_onnx
from profilers import ExportInfo, export_onnx, onnx_session, time_onnx_session

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """A ShuffleNetV2-style unit: split, 1x1 / depthwise 3x3 / 1x1 on one half, concat, shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)
        return self.shuffle(torch.cat([left, self.branch(right)], dim=1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(scale))))


class DataDependent(nn.Module):
    """A Python branch on a tensor value: torch.export cannot capture it, TorchScript tracing can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean((2, 3))
        if y.sum() > -1e9:
            return self.head(y)
        return -self.head(y)


def _randomise_bn(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so the export has real work to fold."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def shuffle_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        ShuffleUnit(8),
        ShuffleUnit(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    return _randomise_bn(model, torch.Generator().manual_seed(1)).eval()


def se_net() -> nn.Module:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.SiLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.SiLU(),
        SqueezeExcite(8, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    return _randomise_bn(model, torch.Generator().manual_seed(3)).eval()


# Short timings: the tests check the figures are there and consistent, not what they are.
_QUICK = {"warmup": 2, "warmup_time_s": 0.02, "repeats": 5, "min_time_s": 0.0, "ci_target": 0.0}


def _batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.fixture(scope="module", params=[shuffle_net, se_net], ids=["shuffle_bn", "silu_se"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, ExportInfo]:
    model = request.param()
    out = tmp_path_factory.mktemp(request.param.__name__) / "model.onnx"
    info = export_onnx(model, _batch(2)[0], out)
    return model, info


def test_export_writes_one_valid_file(exported: tuple[nn.Module, ExportInfo]) -> None:
    _, info = exported
    path = Path(info.path)
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no .data side file
    assert info.exporter == "dynamo", info.dynamo_error
    assert info.dynamo_error == ""
    assert info.file_bytes == path.stat().st_size > 1000
    model_proto = onnx.load(str(path))
    onnx.checker.check_model(model_proto, full_check=True)
    assert [i.name for i in model_proto.graph.input] == ["input"]
    assert [o.name for o in model_proto.graph.output] == ["logits"]
    assert info.input_shape == ("batch", 1, 8, 8)
    assert info.output_shape[1:] == (10,) and isinstance(info.output_shape[0], str)
    assert info.opset >= 17
    json.dumps(info.to_dict())


def test_dynamic_batch_runs_at_1_and_5(exported: tuple[nn.Module, ExportInfo]) -> None:
    model, info = exported
    session = ort.InferenceSession(info.path, providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x, _ = _batch(n, seed=n)
        out = session.run(None, {"input": x.numpy()})[0]
        assert out.shape == (n, 10)
        with torch.no_grad():
            assert np.abs(out - model(x).numpy()).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:.*latency measurement is noisy:RuntimeWarning")
def test_verify_parity_accuracy_and_latency(exported: tuple[nn.Module, ExportInfo]) -> None:
    model, info = exported
    x, labels = _batch(16, seed=7)
    with torch.no_grad():
        labels[:8] = model(x[:8]).argmax(1)  # half right by construction, so the accuracy is not trivially 0
    check = verify_onnx(info.path, model, x, labels, threads=1, latency_options=_QUICK)
    assert check.passed, check.failures()
    assert check.max_abs_diff <= 1e-4 and check.max_abs_diff_batch1 <= 1e-4
    assert check.accuracy_torch is not None and check.accuracy_torch >= 0.5
    assert check.accuracy_onnx == check.accuracy_torch and check.accuracy_equal
    assert check.predictions_equal and check.prediction_mismatches == 0
    assert check.execution_provider == "CPUExecutionProvider"
    assert check.threads == 1
    assert set(check.latency) == {"onnxruntime_batch1", "onnxruntime_batch16", "eager_batch1", "eager_batch16"}
    for key, result in check.latency.items():
        assert result.median_ms > 0 and result.threads == 1, key
        assert result.repeats == 5 and result.warmup == 2, key  # the same timing options for both backends
        assert result.backend == key.split("_")[0]
        assert result.batch_size == int(key.rsplit("batch", 1)[1])
    data = check.to_dict()
    assert data["passed"] is True
    assert data["latency"]["onnxruntime_batch16"]["batch_size"] == 16
    json.dumps(data)


def test_verify_flags_and_strict_raises_on_mismatch(exported: tuple[nn.Module, ExportInfo]) -> None:
    model, info = exported
    other = copy.deepcopy(model)  # the same network ...
    with torch.no_grad():
        head = [m for m in other.modules() if isinstance(m, nn.Linear)][-1]
        head.bias.add_(1e-2)  # ... with a shifted classifier bias: every logit moves by 0.01
    x, labels = _batch(4, seed=3)
    check = verify_onnx(info.path, other, x, labels, latency=False)
    assert not check.parity_ok and not check.passed
    assert 0.009 < check.max_abs_diff < 0.011
    assert check.latency == {}
    with torch.no_grad():
        scale = other(x).abs().max().item()
    assert check.tolerance == pytest.approx(1e-4 * max(1.0, scale))
    assert f"allowed at most {check.tolerance:.3g}" in check.failures()[0]
    with pytest.raises(RuntimeError, match=r"ONNX check of .* failed"):
        verify_onnx(info.path, other, x, labels, latency=False, strict=True)


def test_parity_tolerance_grows_with_the_outputs(exported: tuple[nn.Module, ExportInfo]) -> None:
    """float32 rounding grows with the values: inputs 1000x larger give logits far above 1, whose ONNX Runtime
    and PyTorch values differ by more than 1e-4 with nothing wrong in the file; the tolerance scales with them."""
    model, info = exported
    x, labels = _batch(8, seed=5)
    big = x * 1000
    check = verify_onnx(info.path, model, big, labels, latency=False)
    with torch.no_grad():
        scale = model(big).abs().max().item()
    assert scale > 10
    assert check.tolerance == pytest.approx(1e-4 * scale)
    assert check.passed, check.failures()
    assert check.max_abs_diff <= check.tolerance


@pytest.mark.filterwarnings("ignore:.*latency measurement is noisy:RuntimeWarning")
def test_export_restores_training_mode_and_fixed_batch(tmp_path: Path) -> None:
    model = shuffle_net().train()
    info = export_onnx(model, _batch(3)[0], tmp_path / "fixed.onnx", dynamic_batch=False)
    assert model.training and all(m.training for m in model.modules())
    assert info.input_shape == (3, 1, 8, 8) and not info.dynamic_batch
    session = onnx_session(info.path, threads=1)
    with pytest.raises(Exception, match=r"(?i)dimension|shape"):
        session.run(None, {"input": _batch(5)[0].numpy()})
    result = time_onnx_session(session, _batch(3)[0].numpy(), options={**_QUICK, "repeats": 3})
    assert result.backend == "onnxruntime" and result.batch_size == 3 and result.threads == 1
    assert result.repeats == 3 and result.warmup == 2
    assert result.p10_ms <= result.median_ms <= result.p90_ms


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_fallback_to_torchscript_when_dynamo_cannot_capture(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = DataDependent().eval()
    info = export_onnx(model, _batch(2)[0], tmp_path / "fallback.onnx")
    assert info.exporter == "torchscript"
    assert info.dynamo_error  # why the dynamo exporter was not used
    assert info.input_shape[0] == "batch"
    assert [p.name for p in tmp_path.iterdir()] == ["fallback.onnx"]
    x, labels = _batch(5, seed=9)
    check = verify_onnx(info.path, model, x, labels, latency=False)
    assert check.passed, check.failures()


def test_bad_arguments(tmp_path: Path) -> None:
    model = se_net()
    with pytest.raises(ValueError, match=r"model must be a torch\.nn\.Module"):
        export_onnx("not a model", torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example_input must be a floating tensor"):
        export_onnx(model, torch.zeros(8), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="directory"):
        export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        verify_onnx(tmp_path / "missing.onnx", model, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"labels must be an integer tensor of shape \(2,\)"):
        verify_onnx(tmp_path / "missing.onnx", model, torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown latency option"):
        verify_onnx(tmp_path / "missing.onnx", model, torch.zeros(2, 1, 8, 8), latency_options={"repets": 3})
    with pytest.raises(ValueError, match="atol must be"):
        verify_onnx(tmp_path / "missing.onnx", model, torch.zeros(2, 1, 8, 8), atol=-1.0)
