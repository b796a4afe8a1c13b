"""EfficientNet supernet benchmarks: step time against the extracted largest subnet, accuracy of random
subnets at their own resolution with and without BN recalibration, time per candidate.

Run with ``pytest -m benchmark tests/benchmarks/test_efficientnet_supernet_benchmarks.py``; figures go to
``results/benchmarks/efficientnet_supernet_*.json``. Data: digits (scikit-learn) at the small layout's base
16x16, split 70/15 stratified with seed 0 and normalised with the training mean and standard deviation (as
the shufflenet benchmarks). A candidate is scored on the data resized once to its resolution with
``resize_input`` (what the supernet does inside ``forward``), cached per resolution as the search will do.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from search_spaces import Architecture, get_space
from supernet import (
    EfficientNetSupernet,
    TrainConfig,
    UniformSampler,
    build_supernet,
    resize_input,
    score_subnet,
    train_supernet,
)
from supernet._optim import make_optimizer
from tests.benchmarks._figures import write_figures

pytestmark = pytest.mark.benchmark

# A short single-path schedule: the small layout's paths cost 3-40x the shufflenet ones on one core.
TRAIN = {"epochs": 12, "warmup_epochs": 1.0}


def _digits(side: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Digits resized to ``side`` x ``side``: (train, validation), 70% / 15% of the images."""
    data = load_digits()
    x = resize_input(torch.tensor(data.images, dtype=torch.float32).unsqueeze(1), side)
    y = torch.tensor(data.target, dtype=torch.long)
    train, rest = train_test_split(np.arange(len(y)), train_size=0.7, random_state=seed, stratify=data.target)
    val, _test = train_test_split(rest, train_size=0.5, random_state=seed, stratify=data.target[rest])
    x = (x - x[train].mean()) / x[train].std()
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


class _ByResolution:
    """Train and validation sets resized once per resolution (the cache the search keeps)."""

    def __init__(self, train: TensorDataset, val: TensorDataset) -> None:
        self.base = (train, val)
        self.cache: dict[int, tuple[TensorDataset, TensorDataset]] = {}
        self.seconds = 0.0

    def get(self, side: int) -> tuple[TensorDataset, TensorDataset]:
        if side not in self.cache:
            start = time.perf_counter()
            self.cache[side] = tuple(  # type: ignore[assignment]
                TensorDataset(resize_input(d.tensors[0], side), d.tensors[1]) for d in self.base
            )
            self.seconds += time.perf_counter() - start
        return self.cache[side]


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    torch.set_num_threads(1)
    train, val = _digits(16)
    net = build_supernet(get_space("efficientnet", {"layout": "small"}), seed=0)
    cfg = TrainConfig(**TRAIN)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_supernet(net, train, cfg, out, progress=False)
        seconds = time.perf_counter() - start
    return {"net": net, "data": _ByResolution(train, val), "cfg": cfg, "result": result, "seconds": seconds}


def _score(net: EfficientNetSupernet, arch: Architecture, data: _ByResolution, cfg: TrainConfig,
           bn_batches: int | None, seed: int) -> Any:
    train, val = data.get(net.resolution(arch))
    return score_subnet(net, arch, train, val, bn_batches=bn_batches, batch_size=cfg.batch_size, seed=seed)


def test_accuracy_and_time_per_candidate(trained):
    torch.set_num_threads(1)
    net: EfficientNetSupernet = trained["net"]
    cfg: TrainConfig = trained["cfg"]
    data: _ByResolution = trained["data"]
    sampler = UniformSampler(net.space, seed=2024)
    archs = [sampler.sample() for _ in range(20)]
    with_bn = [_score(net, a, data, cfg, cfg.bn_batches, i) for i, a in enumerate(archs)]
    without = [_score(net, a, data, cfg, None, i).accuracy for i, a in enumerate(archs)]
    accuracy = [s.accuracy for s in with_bn]
    history = trained["result"].history
    write_figures("efficientnet_supernet_accuracy", {
        "task": "digits 16x16, 70/15/15 split (seed 0), efficientnet layout 'small', 20 random subnets, "
                "each scored on the data resized to its own resolution",
        "config": cfg.model_dump(mode="json"),
        "train_seconds": trained["seconds"],
        "seconds_per_epoch_median": statistics.median(h["seconds"] for h in history),
        "final_train_loss": history[-1]["loss"],
        "final_train_accuracy_sampled_paths": history[-1]["accuracy"],
        "resolutions": sorted({net.resolution(a) for a in archs}),
        "val_accuracy_recalibrated": {"median": statistics.median(accuracy), "min": min(accuracy),
                                      "max": max(accuracy)},
        "val_accuracy_inherited_bn": {"median": statistics.median(without), "min": min(without),
                                      "max": max(without)},
    })
    write_figures("efficientnet_supernet_candidate_time", {
        "what": "per candidate: extract, BN recalibration on K training batches, validation accuracy, on data "
                "resized once per resolution (the resizing is counted apart, once per resolution)",
        "bn_batches": cfg.bn_batches,
        "batch_size": cfg.batch_size,
        "threads": 1,
        "candidates": len(with_bn),
        "resize_seconds_total": data.seconds,
        "resolutions_resized": sorted(data.cache),
        "seconds_median": {
            "extract": statistics.median(s.seconds_extract for s in with_bn),
            "bn_recalibration": statistics.median(s.seconds_bn for s in with_bn),
            "validation": statistics.median(s.seconds_eval for s in with_bn),
            "total": statistics.median(s.seconds_extract + s.seconds_bn + s.seconds_eval for s in with_bn),
        },
    })
    assert statistics.median(accuracy) > 0.5
    assert statistics.median(accuracy) >= statistics.median(without)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                criterion: nn.Module, arch: Any = None) -> None:
    """One step as ``train_supernet`` takes it: forward, loss, backward, clipping, SGD update."""
    opt.zero_grad(set_to_none=True)
    logits = model(x) if arch is None else model(x, arch)
    criterion(logits, y).backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 5.0)
    opt.step()


def test_step_time_vs_extracted_largest_subnet():
    """The supernet step includes resizing the raw batch; the extracted subnet gets it resized already."""
    torch.set_num_threads(1)
    net = build_supernet(get_space("efficientnet", {"layout": "small"}), seed=0).train()
    assert isinstance(net, EfficientNetSupernet)
    cfg = TrainConfig()
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train, _ = _digits(16)
    x, y = train.tensors[0][:64], train.tensors[1][:64]
    smallest, largest = net.extreme_architectures()
    super_opt = make_optimizer(net, cfg)
    per_arch: list[dict[str, Any]] = []
    for name, arch in (("largest", largest), ("smallest", smallest), ("random", net.space.sample(0))):
        sub = net.extract(arch).train()
        sub_opt = make_optimizer(sub, cfg)
        x_sub = resize_input(x, net.resolution(arch))
        for _ in range(3):  # warm-up
            _train_step(net, super_opt, x, y, criterion, arch)
            _train_step(sub, sub_opt, x_sub, y, criterion)
        super_times, sub_times = [], []
        for _ in range(15):  # interleaved, so that a load change hits both alike
            t0 = time.perf_counter()
            _train_step(net, super_opt, x, y, criterion, arch)
            t1 = time.perf_counter()
            _train_step(sub, sub_opt, x_sub, y, criterion)
            t2 = time.perf_counter()
            super_times.append(t1 - t0)
            sub_times.append(t2 - t1)
        s_med, b_med = statistics.median(super_times), statistics.median(sub_times)
        per_arch.append({"path": name, "arch_id": arch.arch_id, "resolution": net.resolution(arch),
                         "mult_adds": net.mult_adds(arch), "supernet_ms": s_med * 1e3, "subnet_ms": b_med * 1e3,
                         "ratio": s_med / b_med})
    ratio = per_arch[0]["ratio"]
    write_figures("efficientnet_supernet_step_time", {
        "what": "training step (forward, loss, backward, grad clipping, SGD) on one batch of 64 digits: supernet "
                "path on the raw 16x16 batch (resized inside forward) vs the same subnet extracted and trained "
                "alone on the batch resized beforehand; median of 15 interleaved steps, 1 thread",
        "per_arch": per_arch,
        "ratio_largest": ratio,
        "target_ratio_max": 1.3,
    })
    assert ratio <= 1.3
