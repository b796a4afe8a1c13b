"""Profile: the JSON contract of ``nas profile --json`` and the round trip of every part."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from profilers import Profile, count_all, profile_model

torch.set_num_threads(1)

QUICK: dict[str, Any] = {
    "warmup": 1,
    "warmup_time_s": 0.0,
    "repeats": 5,
    "min_time_s": 0.0,
    "noisy_threshold": float("inf"),
}


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def test_counts_only_profile_has_the_contract_keys() -> None:
    model = tiny_cnn()
    profile = profile_model(model, (3, 12, 12), measure_latency=False)
    counts = count_all(model, torch.randn(1, 3, 12, 12))
    data = json.loads(profile.to_json())
    assert data["params"] == counts.params
    assert data["mult_adds"] == counts.mult_adds
    assert data["elementwise_ops"] == counts.elementwise_ops
    assert data["memory_access_bytes"] == counts.memory_access_bytes
    assert data["latency_ms"] is None and data["energy_mj"] is None and data["guidelines"] == []
    assert data["input_shape"] == [3, 12, 12] and data["batch_size"] == 1 and data["dtype"] == "float32"
    assert "layers" not in data
    assert len(profile.layers) == len(counts.layers)


def test_full_profile_round_trips_through_json() -> None:
    profile = profile_model(
        tiny_cnn(),
        (3, 8, 8),
        threads=1,
        latency_options=QUICK,
        energy=True,
        energy_min_time_s=0.05,
        guidelines=True,
        guidelines_measure=False,
    )
    data = json.loads(profile.to_json(include_layers=True))
    latency = data["latency_ms"]
    for key in (
        "median",
        "p10",
        "p90",
        "iqr",
        "repeats",
        "device",
        "device_name",
        "backend",
        "threads",
        "batch_size",
        "dtype",
    ):
        assert key in latency, key
    assert latency["backend"] == "eager" and latency["threads"] == 1 and latency["median"] > 0
    assert data["energy_mj"]["value"] > 0 and data["energy_mj"]["source"] in ("nvml", "rapl", "model")
    assert isinstance(data["guidelines"], list)
    assert all("guideline" in f and "message" in f for f in data["guidelines"])
    assert len(data["layers"]) == len(profile.layers)
    restored = Profile.from_dict(data)
    assert restored == profile


def test_batch_size_scales_counts() -> None:
    one = profile_model(tiny_cnn(), (3, 8, 8), measure_latency=False)
    four = profile_model(tiny_cnn(), (3, 8, 8), batch_size=4, measure_latency=False)
    assert four.mult_adds == 4 * one.mult_adds
    assert four.params == one.params
    assert one.memory_access_bytes < four.memory_access_bytes < 4 * one.memory_access_bytes  # weights read once


def test_model_left_untouched() -> None:
    model = tiny_cnn().train()
    profile_model(model, (3, 8, 8), dtype="float64", threads=1, latency_options=QUICK)
    assert all(m.training for m in model.modules())
    assert model[0].weight.dtype == torch.float32


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="latency_options may not set"):
        profile_model(tiny_cnn(), (3, 8, 8), latency_options={"threads": 2})
    with pytest.raises(ValueError, match="input_shape"):
        profile_model(tiny_cnn(), (1, 3, -8, 8))
    with pytest.raises(ValueError, match="lacks the keys"):
        Profile.from_dict({"params": 1})
