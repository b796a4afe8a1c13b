"""Supernet training: exact resumption, config checks, non-finite losses, checkpoints, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from supernet import (
    CHECKPOINT_NAME,
    NonFiniteLossError,
    TrainConfig,
    build_supernet,
    load_checkpoint,
    load_supernet,
    score_subnet,
    top1_accuracy,
    train_supernet,
)
from supernet._optim import WarmupCosine, make_optimizer

# 96 images / batch 32 = 3 steps an epoch: a fair group of 4 steps straddles epochs.
BASE = {"epochs": 3, "batch_size": 32, "lr": 0.05, "warmup_epochs": 1, "threads": 1, "seed": 7}


class _Stop(Exception):
    pass


def _stop_after(n: int):
    def callback(epoch: int, metrics) -> None:
        if epoch == n:
            raise _Stop

    return callback


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("sampler", ["uniform", "fair"])
def test_interrupted_and_resumed_run_equals_uninterrupted(tiny_space, digits96, tmp_path, sampler):
    cfg = TrainConfig(**BASE, sampler=sampler)
    full = build_supernet(tiny_space, seed=1)
    result = train_supernet(full, digits96, cfg, tmp_path / "full", progress=False)
    assert result.epochs_completed == 3 and result.resumed_from_epoch == 0 and len(result.history) == 3

    part = build_supernet(tiny_space, seed=1)
    with pytest.raises(_Stop):
        train_supernet(part, digits96, cfg, tmp_path / "part", progress=False, on_epoch_end=_stop_after(1))
    assert load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)["epoch"] == 1

    resumed = build_supernet(tiny_space, seed=99)  # whatever its initial weights, the checkpoint wins
    again = train_supernet(resumed, digits96, cfg, tmp_path / "part", progress=False)
    assert again.resumed_from_epoch == 1 and again.epochs_completed == 3
    assert _same_weights(full, resumed)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in result.history]


def test_finished_training_returns_at_once_with_the_weights(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**BASE)
    net = build_supernet(tiny_space, seed=1)
    train_supernet(net, digits96, cfg, tmp_path, progress=False)
    ckpt = tmp_path / CHECKPOINT_NAME
    mtime = ckpt.stat().st_mtime_ns
    fresh = build_supernet(tiny_space, seed=2)
    again = train_supernet(fresh, digits96, cfg.model_copy(update={"threads": 2}), tmp_path, progress=False)
    assert again.resumed_from_epoch == 3 and again.epochs_completed == 3
    assert ckpt.stat().st_mtime_ns == mtime
    assert _same_weights(net, fresh)


def test_config_mismatch_on_resume_names_the_keys(tiny_space, digits96, tmp_path):
    train_supernet(build_supernet(tiny_space), digits96, TrainConfig(**BASE), tmp_path, progress=False)
    other = TrainConfig(**{**BASE, "lr": 0.1, "epochs": 5})
    with pytest.raises(ValueError, match=r"different supernet config \(epochs: 3 -> 5; lr: 0.05 -> 0.1\)"):
        train_supernet(build_supernet(tiny_space), digits96, other, tmp_path, progress=False)


def test_space_mismatch_on_resume(tiny_space, small_space, digits96, tmp_path):
    train_supernet(build_supernet(tiny_space), digits96, TrainConfig(**BASE), tmp_path, progress=False)
    with pytest.raises(ValueError, match="was trained for space 'shufflenet' with config"):
        train_supernet(build_supernet(small_space), digits96, TrainConfig(**BASE), tmp_path, progress=False)


def test_other_training_data_on_resume(tiny_space, digits, tmp_path):
    train_supernet(build_supernet(tiny_space), digits(96), TrainConfig(**BASE), tmp_path, progress=False)
    with pytest.raises(ValueError, match="trained on 96 samples, this training set has 64"):
        train_supernet(build_supernet(tiny_space), digits(64), TrainConfig(**BASE), tmp_path, progress=False)


def test_finished_budget_run_does_not_probe_costs(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**{**BASE, "epochs": 1, "sampler": "budget", "budget_high": 1})
    calls: list[str] = []

    def cost(arch) -> float:
        calls.append(arch.arch_id)
        return float(sum(v == "xception" for v in arch.values.values()))

    train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False, cost_fn=cost)
    assert calls
    calls.clear()
    train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False, cost_fn=cost)
    assert calls == []


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tiny_space, digits96, tmp_path):
    net = build_supernet(tiny_space)

    weight = dict(net.named_parameters())["stem.0.weight"]

    def poison(epoch: int, metrics) -> None:
        with torch.no_grad():
            weight[0, 0, 0, 0] = float("nan")

    with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at epoch 2, step 1") as err:
        train_supernet(net, digits96, TrainConfig(**BASE), tmp_path, progress=False, on_epoch_end=poison)
    assert (err.value.epoch, err.value.step) == (2, 1)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_exploding_training_is_a_non_finite_error(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**{**BASE, "lr": 1e12, "warmup_epochs": 0, "grad_clip": None, "label_smoothing": 0.0})
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_checkpoint_is_plain_data(tiny_space, digits96, tmp_path):
    net = build_supernet(tiny_space)
    train_supernet(net, digits96, TrainConfig(**{**BASE, "epochs": 1}), tmp_path, progress=False)
    path = tmp_path / CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "sampler", "rng", "epoch", "config", "metrics"}
    assert state["config"] == TrainConfig(**{**BASE, "epochs": 1}).model_dump(mode="json")
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert set(state["metrics"][0]) == {"epoch", "loss", "accuracy", "images_per_s", "lr", "seconds"}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # no temporary file left behind
    loaded = load_supernet(path)
    assert _same_weights(loaded, net)


def test_training_leaves_global_state_alone(tiny_space, digits96, tmp_path):
    torch.manual_seed(0)
    rng_before = torch.get_rng_state()
    threads_before = torch.get_num_threads()
    cfg = TrainConfig(**{**BASE, "epochs": 1, "threads": 1 if threads_before > 1 else 2})
    train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before


def test_training_learns_and_scores_subnets(tiny_space, digits, tmp_path):
    data = digits(320)
    train, val = torch.utils.data.random_split(data, [256, 64], generator=torch.Generator().manual_seed(0))
    net = build_supernet(tiny_space, seed=0)
    cfg = TrainConfig(epochs=6, batch_size=32, lr=0.2, warmup_epochs=1, threads=1)
    result = train_supernet(net, train, cfg, tmp_path, progress=True)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.final["lr"] == pytest.approx(0.0, abs=1e-9)
    arch = tiny_space.sample(np.random.default_rng(0))
    score = score_subnet(net, arch, train, val, bn_batches=4, batch_size=32)
    assert score.bn_batches == 4 and score.accuracy > 0.3  # chance is 0.1
    assert score_subnet(net, arch, train, val, bn_batches=None).bn_batches == 0


@pytest.mark.parametrize("amp", ["bf16", "off"])
def test_amp_modes_on_cpu(tiny_space, digits96, tmp_path, amp):
    cfg = TrainConfig(**{**BASE, "epochs": 1, "amp": amp})
    result = train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)
    assert math.isfinite(result.final["loss"])


def test_fp16_needs_cuda(tiny_space, digits96, tmp_path):
    with pytest.raises(ValueError, match="amp 'fp16' needs a CUDA device"):
        train_supernet(build_supernet(tiny_space), digits96, TrainConfig(amp="fp16"), tmp_path, progress=False)


def test_budget_training_needs_a_cost_function_and_uses_it(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**{**BASE, "epochs": 1, "sampler": "budget", "budget_high": 1, "budget_metric": "xc"})
    with pytest.raises(ValueError, match="needs a cost function computing 'xc'"):
        train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)
    seen = []

    def cost(arch) -> float:
        seen.append(arch)
        return float(sum(v == "xception" for v in arch.values.values()))

    train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False, cost_fn=cost)
    assert seen


def test_paths_per_step_accumulates(tiny_space, digits96, tmp_path):
    cfg = TrainConfig(**{**BASE, "epochs": 1, "sampler": "fair", "paths_per_step": 4})
    result = train_supernet(build_supernet(tiny_space), digits96, cfg, tmp_path, progress=False)
    assert math.isfinite(result.final["loss"])


def test_batch_larger_than_dataset(tiny_space, digits96, tmp_path):
    with pytest.raises(ValueError, match="batch_size 128 is larger than the training set"):
        train_supernet(build_supernet(tiny_space), digits96, TrainConfig(batch_size=128), tmp_path)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?\); allowed keys: epochs,"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="lr: Input should be greater than 0"):
        TrainConfig.from_dict({"lr": -1})
    with pytest.raises(ValueError, match="sampler 'budget' needs budget_low, budget_high or both"):
        TrainConfig.from_dict({"sampler": "budget"})
    with pytest.raises(ValueError, match="only used by sampler 'budget'"):
        TrainConfig.from_dict({"budget_low": 3})
    with pytest.raises(ValueError, match=r"warmup_epochs 5\.0 exceeds epochs 2"):
        TrainConfig.from_dict({"epochs": 2, "warmup_epochs": 5})
    with pytest.raises(ValueError, match="amp"):
        TrainConfig.from_dict({"amp": "fp8"})
    cfg = TrainConfig.from_dict({"bn_recalibration": False})
    assert cfg.recalibration_batches is None
    assert TrainConfig().recalibration_batches == TrainConfig().bn_batches


def test_warmup_then_cosine():
    f = WarmupCosine(warmup_steps=4, total_steps=14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0
    assert f(9) == pytest.approx(0.5)
    assert f(14) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(4, 14))
    assert WarmupCosine(0, 10)(0) == 1.0


def test_no_weight_decay_on_batch_norm_and_bias(tiny_space):
    net = build_supernet(tiny_space)
    decay, no_decay = make_optimizer(net, TrainConfig(weight_decay=1e-3)).param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert decay["nesterov"] and decay["momentum"] == 0.9
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in decay["params"])
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))


def test_evaluate_restores_mode_and_counts(tiny_space, digits96):
    model = build_supernet(tiny_space).extract(tiny_space.sample(np.random.default_rng(0))).train()
    acc = top1_accuracy(model, digits96, batch_size=40)
    assert model.training
    with torch.no_grad():
        model.eval()
        expected = (model(digits96.tensors[0]).argmax(1) == digits96.tensors[1]).float().mean().item()
    assert acc == pytest.approx(expected)
