"""Training the efficientnet supernet: uniform, budget and fair sampling, the sandwich rule with in-place
distillation, config checks and exact resumption."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from search_spaces import get_space
from search_spaces.efficientnet import COEFFICIENTS, EfficientNetSpace
from supernet import (
    CHECKPOINT_NAME,
    BudgetSampler,
    EfficientNetSupernet,
    FairSampler,
    SandwichRule,
    TrainConfig,
    UniformSampler,
    build_supernet,
    distillation_loss,
    fair_labels,
    load_checkpoint,
    load_supernet,
    train_supernet,
)

torch.set_num_threads(1)

TINY = {
    "layout": "small",
    "input_size": 8,
    "stem_channels": 8,
    "stages": ("mb_r1_k3_s1_e1_c8_se0.25", "mb_r1_k3_s2_e6_c16_se0.25"),
    "head_channels": 32,
    "phi_grid": (0, 1),
}
# 96 images / batch 32 = 3 steps an epoch.
BASE = {"epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_epochs": 0, "threads": 1, "seed": 3}


class _Stop(Exception):
    pass


def _stop_after_first(epoch: int, metrics) -> None:
    if epoch == 1:
        raise _Stop


@pytest.fixture
def space() -> EfficientNetSpace:
    space = get_space("efficientnet", TINY)
    assert isinstance(space, EfficientNetSpace)
    return space


def _net(space: EfficientNetSpace, seed: int = 1, **options) -> EfficientNetSupernet:
    net = build_supernet(space, seed=seed, **options)
    assert isinstance(net, EfficientNetSupernet)
    return net


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_uniform_training_draws_every_resolution(space, digits96, tmp_path):
    draws = UniformSampler(space, seed=BASE["seed"])
    resolutions = {space.resolution(draws.sample()) for _ in range(6)}  # the 6 paths the run below trains
    assert resolutions == {8, 12}
    result = train_supernet(_net(space), digits96, TrainConfig(**BASE), tmp_path, progress=False)
    assert result.epochs_completed == 2 and all(np.isfinite(h["loss"]) for h in result.history)


def test_sandwich_paths_are_largest_smallest_then_sampled(space):
    net = _net(space)
    rule = SandwichRule(net, UniformSampler(space, seed=5), random_paths=2)
    reference = UniformSampler(space, seed=5)
    smallest, largest = net.extreme_architectures()
    for _ in range(3):
        assert rule.paths() == [largest, smallest, reference.sample(), reference.sample()]


def test_distillation_loss_moves_only_the_student():
    teacher = torch.randn(4, 10, requires_grad=True)
    student = torch.randn(4, 10, requires_grad=True)
    loss = distillation_loss(student, teacher, temperature=2.0)
    loss.backward()
    assert teacher.grad is None and student.grad is not None
    # minimal (the teacher's entropy) when the student predicts what the teacher does
    assert distillation_loss(teacher.detach(), teacher) < distillation_loss(student.detach(), teacher)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(student, teacher, 0.0)


def test_sandwich_resumes_exactly(space, digits96, tmp_path):
    cfg = TrainConfig(**BASE, sandwich=True, sandwich_random_paths=1, distill_temperature=2.0)
    full = _net(space)
    result = train_supernet(full, digits96, cfg, tmp_path / "full", progress=False)
    part = _net(space)
    with pytest.raises(_Stop):
        train_supernet(part, digits96, cfg, tmp_path / "part", progress=False, on_epoch_end=_stop_after_first)
    resumed = _net(space, seed=9)
    again = train_supernet(resumed, digits96, cfg, tmp_path / "part", progress=False)
    assert again.resumed_from_epoch == 1 and _same_weights(full, resumed)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in result.history]
    saved = load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["config"]
    assert saved["sandwich"] is True and saved["sandwich_random_paths"] == 1 and saved["distill_temperature"] == 2.0
    # distillation changes what the small paths learn
    labels_only = _net(space)
    train_supernet(labels_only, digits96, cfg.model_copy(update={"inplace_distillation": False,
                                                                "distill_temperature": 1.0}),
                   tmp_path / "labels", progress=False)
    assert not _same_weights(full, labels_only)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"sandwich_random_paths": 3}, "sandwich_random_paths only apply with sandwich: true"),
        ({"inplace_distillation": False}, "inplace_distillation only apply with sandwich: true"),
        ({"sandwich": True, "sampler": "fair"}, "not 'fair'"),
        ({"sandwich": True, "paths_per_step": 2}, "paths_per_step must stay 1, got 2"),
        ({"sandwich": True, "inplace_distillation": False, "distill_temperature": 3.0},
         "distill_temperature only applies with inplace_distillation: true"),
        ({"sandwich": True, "sandwich_random_paths": -1}, "sandwich_random_paths"),
    ],
)
def test_sandwich_config_errors(keys, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(keys)


def test_dumped_config_reloads():
    for cfg in (TrainConfig(), TrainConfig(sandwich=True, sandwich_random_paths=0)):
        assert TrainConfig.from_dict(cfg.model_dump(mode="json")) == cfg
    old = {k: v for k, v in TrainConfig().model_dump(mode="json").items() if "sandwich" not in k}
    assert TrainConfig().differences(old) == []  # a checkpoint from before the sandwich keys resumes


def test_sandwich_refused_for_shufflenet(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**BASE, sandwich=True)
    with pytest.raises(ValueError, match="space 'shufflenet' has no such order"):
        train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)


def test_budget_sampler_on_efficientnet(space, digits96, tmp_path):
    net = _net(space)
    smallest, largest = net.extreme_architectures()
    high = (net.mult_adds(smallest) + net.mult_adds(largest)) / 4
    sampler = BudgetSampler(space, net.mult_adds, high=high, seed=0, metric="mult_adds")
    archs = [sampler.sample() for _ in range(20)]
    assert all(net.mult_adds(a) <= high for a in archs)
    assert all(space.validate(a) == a for a in archs)  # the compound constraint holds
    cfg = TrainConfig(**{**BASE, "epochs": 1}, sampler="budget", budget_high=high, sandwich=True)
    result = train_supernet(net, digits96, cfg, tmp_path, progress=False, cost_fn=net.mult_adds)
    assert result.epochs_completed == 1


def test_fair_sampler_is_fair_over_the_independent_labels(space):
    labels = fair_labels(space)
    assert set(labels) == {"phi", COEFFICIENTS} | {k for k in space.choices() if k.startswith("stage")}
    sampler = FairSampler(space, seed=0)
    n = sampler.group_size
    assert n == len(space.coefficients())
    group = [sampler.sample() for _ in range(n)]
    for arch in group:
        assert space.validate(arch) == arch and arch["scaling"] == "compound"
    for label, options in labels.items():
        counts = collections.Counter(arch[label] for arch in group)
        assert set(counts) == set(options), label
        assert max(counts.values()) - min(counts.values()) <= 1, label


def test_fair_training_and_kernel_transform_checkpoint(space, digits96, tmp_path):
    net = _net(space, kernel_transform=True)
    cfg = TrainConfig(**{**BASE, "epochs": 1}, sampler="fair")
    train_supernet(net, digits96, cfg, tmp_path, progress=False)
    loaded = load_supernet(tmp_path / CHECKPOINT_NAME)
    assert isinstance(loaded, EfficientNetSupernet) and loaded.options() == {"kernel_transform": True}
    assert _same_weights(net, loaded)
    plain = _net(space)  # resuming into the same directory with another option is refused
    with pytest.raises(ValueError, match="supernet options"):
        train_supernet(plain, digits96, cfg.model_copy(update={"epochs": 2}), tmp_path, progress=False)
