"""Training the NASNet supernet: scheduled drop path with exact resumption, budget and fair samplers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from search_spaces import Architecture, get_space
from search_spaces.nasnet import NASNetSpace
from supernet import (
    FairSampler,
    NASNetSupernet,
    TrainConfig,
    build_supernet,
    load_supernet,
    score_subnet,
    train_supernet,
)
from supernet.train import _forward_options

torch.set_num_threads(1)

TINY = {
    "layout": "small",
    "input_size": 8,
    "filters": 4,
    "num_blocks": 2,
    "operations": ["identity", "sep_conv_3x3", "avg_pool_3x3", "max_pool_3x3", "conv_1x3_3x1"],
}
# 96 images / batch 32 = 3 steps an epoch, 9 steps in all.
BASE = {"epochs": 3, "batch_size": 32, "lr": 0.05, "warmup_epochs": 1, "threads": 1, "seed": 3}


@pytest.fixture
def tiny() -> NASNetSpace:
    space = get_space("nasnet", TINY)
    assert isinstance(space, NASNetSpace)
    return space


class _Recording(NASNetSupernet):
    """Records the architecture and drop-path rate of every training forward."""

    def __init__(self, space: NASNetSpace) -> None:
        super().__init__(space)
        self.calls: list[tuple[Architecture, float]] = []

    def forward(self, x: torch.Tensor, arch: Architecture | Mapping[str, Any], drop_path: float = 0.0) -> torch.Tensor:
        if self.training:
            self.calls.append((self.validate(arch), drop_path))
        return super().forward(x, arch, drop_path)


def _weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


class _Stop(Exception):
    pass


def _stop_after_first(epoch: int, metrics: object) -> None:
    if epoch == 1:
        raise _Stop


@pytest.mark.parametrize("sampler", ["uniform", "fair"])
def test_drop_path_training_resumes_exactly(tiny, digits96, tmp_path, sampler):
    cfg = TrainConfig(**BASE, sampler=sampler, drop_path_prob=0.4)
    full = build_supernet(tiny, seed=1)
    train_supernet(full, digits96, cfg, tmp_path / "full", progress=False)
    part = build_supernet(tiny, seed=1)
    with pytest.raises(_Stop):
        train_supernet(part, digits96, cfg, tmp_path / "part", progress=False, on_epoch_end=_stop_after_first)
    resumed = build_supernet(tiny, seed=5)
    result = train_supernet(resumed, digits96, cfg, tmp_path / "part", progress=False)
    assert result.resumed_from_epoch == 1
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    loaded = load_supernet(result.checkpoint)  # what a search worker reads
    assert isinstance(loaded, NASNetSupernet) and not loaded.training
    assert all(torch.equal(a[k], v) for k, v in loaded.state_dict().items())
    # drop path does change training
    plain = build_supernet(tiny, seed=1)
    train_supernet(plain, digits96, cfg.model_copy(update={"drop_path_prob": 0.0}), tmp_path / "plain", progress=False)
    c = _weights(plain)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_drop_path_rate_rises_linearly_over_training(tiny, digits96, tmp_path):
    net = _Recording(tiny)
    train_supernet(net, digits96, TrainConfig(**BASE, drop_path_prob=0.4), tmp_path, progress=False)
    rates = [rate for _, rate in net.calls]
    assert rates == pytest.approx([0.4 * step / 8 for step in range(9)])
    assert _forward_options(TrainConfig(), 5, 10) == {}  # off by default: forward gets no extra argument


def test_drop_path_needs_a_supernet_that_has_it(digits96, tmp_path):
    shufflenet = build_supernet(get_space("shufflenet", {"layout": "small", "input_size": 8}))
    with pytest.raises(ValueError, match=r"drop_path_prob 0.2 needs a supernet with drop path; the 'shufflenet'"):
        train_supernet(shufflenet, digits96, TrainConfig(**BASE, drop_path_prob=0.2), tmp_path, progress=False)
    with pytest.raises(ValueError, match="drop_path_prob"):
        TrainConfig(drop_path_prob=1.0)


def _params(net: NASNetSupernet, arch: Architecture) -> float:
    """Parameters of the extracted subnet, counted from the supernet's path (no network built)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return float(sum(t.numel() for k, t in net.subnet_state_dict(arch).items() if not k.endswith(buffers)))


def test_budget_sampler_trains_only_paths_inside_the_budget(tiny, digits96, tmp_path):
    net = _Recording(tiny)
    arch = tiny.sample(0)
    assert _params(net, arch) == sum(p.numel() for p in tiny.build(arch).parameters())
    costs = sorted(_params(net, tiny.sample(seed)) for seed in range(40))
    high = costs[len(costs) // 3]
    cfg = TrainConfig(**{**BASE, "epochs": 1}, sampler="budget", budget_high=high, budget_metric="params")
    train_supernet(net, digits96, cfg, tmp_path, progress=False, cost_fn=lambda a: _params(net, a))
    assert len(net.calls) == 3
    assert all(_params(net, a) <= high for a, _ in net.calls)


def test_fair_sampler_is_strict_over_operations_and_balanced_over_inputs(tiny):
    sampler = FairSampler(tiny, seed=0)
    n = len(TINY["operations"])
    assert sampler.group_size == n
    for _ in range(2):  # two groups
        group = [sampler.sample() for _ in range(n)]
        for label, options in tiny.choices().items():
            counts = Counter(a[label] for a in group)
            if "/op" in label:
                assert counts == Counter(options), label  # every operation exactly once
            else:
                m = len(options)
                assert set(counts) == set(options) and set(counts.values()) <= {n // m, n // m + 1}, label


def test_trained_supernet_scores_subnets(tiny, digits96, tmp_path):
    """The scoring path of a search: extract, recalibrate BN, evaluate (accuracy: the benchmark's job)."""
    net = build_supernet(tiny, seed=0)
    result = train_supernet(net, digits96, TrainConfig(**BASE), tmp_path, progress=False)
    assert all(math.isfinite(h["loss"]) for h in result.history)
    score = score_subnet(net, tiny.sample(1), digits96, digits96, bn_batches=3, batch_size=32)
    assert score.bn_batches == 3 and 0.0 <= score.accuracy <= 1.0
