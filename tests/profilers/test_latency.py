"""Latency measurement: result fields, settings restored, errors, JSON round trip, ONNX Runtime backend.

No timing figure is asserted: the machine is shared. Only structure, bookkeeping and ordering of statistics.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from profilers import LatencyResult, measure_latency
from profilers.timing import _percentile

torch.set_num_threads(1)

QUICK: dict[str, Any] = {
    "warmup": 2,
    "warmup_time_s": 0.0,
    "repeats": 8,
    "min_time_s": 0.0,
    "noisy_threshold": float("inf"),
}


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def test_result_fields_and_statistics_order() -> None:
    result = measure_latency(tiny_cnn(), (3, 16, 16), threads=1, batch_size=2, **QUICK)
    assert result.repeats >= 8 and result.warmup == 2 and result.runs_per_sample >= 1
    assert 0 < result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.iqr_ms >= 0 and result.mean_ms > 0
    assert (result.device, result.backend, result.threads, result.batch_size, result.dtype) == (
        "cpu",
        "eager",
        1,
        2,
        "float32",
    )
    assert result.input_shape == (3, 16, 16)
    assert result.device_name
    assert result.settings["torch_version"] == torch.__version__
    assert result.settings["timer"] == "perf_counter"
    assert not result.noisy


def test_json_round_trip() -> None:
    result = measure_latency(tiny_cnn(), (3, 8, 8), threads=1, runs_per_sample=3, **QUICK)
    assert result.runs_per_sample == 3
    assert LatencyResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_threads_mode_and_model_restored() -> None:
    model = tiny_cnn().train()
    before = torch.get_num_threads()
    conv = model[0]
    assert isinstance(conv, nn.Conv2d)
    weight = conv.weight.detach().clone()
    result = measure_latency(model, (3, 8, 8), threads=2, dtype="float64", **QUICK)
    assert result.threads == 2 and result.dtype == "float64"
    assert torch.get_num_threads() == before
    assert all(m.training for m in model.modules())
    assert conv.weight.dtype == torch.float32 and torch.equal(conv.weight, weight)


def test_noisy_results_are_flagged_with_a_warning() -> None:
    options = {**QUICK, "noisy_threshold": -1.0}
    with pytest.warns(RuntimeWarning, match="noisy"):
        result = measure_latency(tiny_cnn(), (3, 8, 8), threads=1, **options)
    assert result.noisy and result.relative_spread >= 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_cuda_without_cuda_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        measure_latency(tiny_cnn(), (3, 8, 8), device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        measure_latency(tiny_cnn(), (3, 8, 8), device="cuda:0", backend="onnxruntime")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "tensorrt"}, "backend must be one of"),
        ({"device": "tpu"}, "device must be"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"backend": "onnxruntime", "dtype": "float16"}, "float32"),
        ({"batch_size": 0}, "batch_size"),
        ({"repeats": 0}, "repeats"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure_latency(tiny_cnn(), (3, 8, 8), **kwargs)  # type: ignore[arg-type]


def test_bad_input_shape() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency(tiny_cnn(), (3, 0, 8))
    with pytest.raises(ValueError, match="input_shape"):
        measure_latency(tiny_cnn(), ())


def test_percentile_matches_linear_interpolation() -> None:
    ordered = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert _percentile(ordered, 50) == 3.0
    assert _percentile(ordered, 10) == pytest.approx(1.4)
    assert _percentile(ordered, 75) - _percentile(ordered, 25) == pytest.approx(2.0)
    assert _percentile([7.0], 90) == 7.0


def test_onnxruntime_backend_on_a_tiny_model() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = measure_latency(tiny_cnn(), (3, 8, 8), backend="onnxruntime", threads=1, **QUICK)
    assert result.backend == "onnxruntime" and result.median_ms > 0
    settings = result.settings
    assert settings["execution_provider"] == "CPUExecutionProvider"
    assert settings["exporter"] in ("dynamo", "torchscript")
    assert settings["intra_op_num_threads"] == 1 and settings["inter_op_num_threads"] == 1
    assert settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
