"""Supernet benchmarks: step time against the static subnet, accuracy on digits, candidate cost, memory.

Run with ``pytest -m benchmark tests/benchmarks/test_supernet_benchmarks.py``; figures go to
``results/benchmarks/supernet_*.json``. The data is digits (scikit-learn) resized to 16x16, split 70/15/15
stratified with seed 0 and normalised with the training mean and standard deviation: the embedded default
task, rebuilt here because tests of ``supernet`` do not import ``nas``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from search_spaces import get_space
from supernet import Supernet, TrainConfig, UniformSampler, build_supernet, score_subnet, train_supernet
from supernet._optim import make_optimizer
from tests.benchmarks._figures import write_figures

pytestmark = pytest.mark.benchmark



def digits_16(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Digits at 16x16: (train, validation), 70% / 15% of the images (the last 15% is left for tests)."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    y = torch.tensor(data.target, dtype=torch.long)
    index = np.arange(len(y))
    train, rest = train_test_split(index, train_size=0.7, random_state=seed, stratify=data.target)
    val, _test = train_test_split(rest, train_size=0.5, random_state=seed, stratify=data.target[rest])
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """The small-layout supernet trained with the default TrainConfig on digits 16x16 (one thread)."""
    import tempfile

    train, val = digits_16()
    space = get_space("shufflenet", {"layout": "small"})
    net = build_supernet(space, seed=0)
    cfg = TrainConfig()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_supernet(net, train, cfg, out, progress=False)
        seconds = time.perf_counter() - start
    return {"net": net, "train": train, "val": val, "cfg": cfg, "result": result, "seconds": seconds}


def test_supernet_accuracy_on_digits(trained):
    torch.set_num_threads(1)
    net: Supernet = trained["net"]
    cfg: TrainConfig = trained["cfg"]
    sampler = UniformSampler(net.space, seed=2024)
    archs = [sampler.sample() for _ in range(20)]
    with_bn = [score_subnet(net, a, trained["train"], trained["val"], bn_batches=cfg.bn_batches,
                               batch_size=cfg.batch_size, seed=i).accuracy for i, a in enumerate(archs)]
    without = [score_subnet(net, a, trained["train"], trained["val"], bn_batches=None).accuracy for a in archs]
    history = trained["result"].history
    figures = {
        "task": "digits 16x16, 70/15/15 split (seed 0), shufflenet layout 'small', 20 random subnets",
        "config": cfg.model_dump(mode="json"),
        "train_seconds": trained["seconds"],
        "seconds_per_epoch_median": statistics.median(h["seconds"] for h in history),
        "images_per_s_median": statistics.median(h["images_per_s"] for h in history),
        "final_train_loss": history[-1]["loss"],
        "final_train_accuracy_sampled_paths": history[-1]["accuracy"],
        "val_accuracy_recalibrated": {"median": statistics.median(with_bn), "min": min(with_bn), "max": max(with_bn)},
        "val_accuracy_inherited_bn": {"median": statistics.median(without), "min": min(without), "max": max(without)},
        "targets": {"train_seconds_max": 180, "median_recalibrated_min": 0.90},
    }
    write_figures("supernet_accuracy", figures)
    assert trained["seconds"] <= 180
    assert statistics.median(with_bn) >= 0.90
    assert statistics.median(with_bn) > statistics.median(without)


def test_candidate_recalibration_and_validation_time(trained):
    torch.set_num_threads(1)
    net: Supernet = trained["net"]
    cfg: TrainConfig = trained["cfg"]
    sampler = UniformSampler(net.space, seed=7)
    scores = [score_subnet(net, sampler.sample(), trained["train"], trained["val"], bn_batches=cfg.bn_batches,
                              batch_size=cfg.batch_size) for _ in range(20)]
    figures = {
        "what": "per candidate: extract, BN recalibration on K training batches, validation accuracy",
        "bn_batches": cfg.bn_batches,
        "batch_size": cfg.batch_size,
        "val_images": len(trained["val"]),
        "threads": 1,
        "candidates": len(scores),
        "seconds_median": {
            "extract": statistics.median(s.seconds_extract for s in scores),
            "bn_recalibration": statistics.median(s.seconds_bn for s in scores),
            "validation": statistics.median(s.seconds_eval for s in scores),
            "total": statistics.median(s.seconds_extract + s.seconds_bn + s.seconds_eval for s in scores),
        },
    }
    write_figures("supernet_candidate_time", figures)
    assert all(s.bn_batches == cfg.bn_batches for s in scores)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                criterion: nn.Module, arch: Any = None) -> None:
    """One step as ``train_supernet`` takes it: forward, loss, backward, clipping, SGD update."""
    opt.zero_grad(set_to_none=True)
    logits = model(x) if arch is None else model(x, arch)
    criterion(logits, y).backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 5.0)
    opt.step()


def test_supernet_step_time_vs_static_subnet():
    torch.set_num_threads(1)
    space = get_space("shufflenet", {"layout": "small"})
    net = build_supernet(space, seed=0).train()
    cfg = TrainConfig()
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train, _ = digits_16()
    x, y = train.tensors[0][:64], train.tensors[1][:64]
    sampler = UniformSampler(space, seed=0)
    super_opt = make_optimizer(net, cfg)
    per_arch: list[dict[str, Any]] = []
    ratios: list[float] = []
    for _ in range(5):
        arch = sampler.sample()
        sub = net.extract(arch).train()
        sub_opt = make_optimizer(sub, cfg)
        for _ in range(5):  # warm-up
            _train_step(net, super_opt, x, y, criterion, arch)
            _train_step(sub, sub_opt, x, y, criterion)
        super_times, sub_times = [], []
        for _ in range(50):  # interleaved, so that a load change hits both alike
            t0 = time.perf_counter()
            _train_step(net, super_opt, x, y, criterion, arch)
            t1 = time.perf_counter()
            _train_step(sub, sub_opt, x, y, criterion)
            t2 = time.perf_counter()
            super_times.append(t1 - t0)
            sub_times.append(t2 - t1)
        s_med, b_med = statistics.median(super_times), statistics.median(sub_times)
        ratios.append(s_med / b_med)
        per_arch.append({"arch_id": arch.arch_id, "supernet_ms": s_med * 1e3, "subnet_ms": b_med * 1e3,
                         "ratio": ratios[-1]})
    ratio = statistics.median(ratios)
    write_figures("supernet_step_time", {
        "what": "training step (forward, loss, backward, grad clipping, SGD) on one batch of 64 digits 16x16: "
                "supernet path vs the same subnet extracted and trained alone; median of 50 interleaved steps "
                "per architecture, 5 architectures, 1 thread",
        "per_arch": per_arch,
        "ratio_median": ratio,
        "target_ratio_max": 1.15,
    })
    assert ratio <= 1.15


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, re, resource, sys, tempfile
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_supernet_benchmarks import digits_16
    from search_spaces import get_space
    from supernet import TrainConfig, build_supernet, train_supernet

    def status(key):
        return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

    torch.set_num_threads(1)
    train, _ = digits_16()
    net = build_supernet(get_space("shufflenet", {"layout": "small"}), seed=0)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident set
    before = status("VmRSS")
    with tempfile.TemporaryDirectory() as out:
        train_supernet(net, train, TrainConfig(epochs=2), out, progress=False)
    peak = status("VmHWM")
    params = sum(p.numel() for p in net.parameters())
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_before_kib": before, "peak_kib": peak, "ru_maxrss_kib": maxrss, "params": params}))
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_supernet_training_peak_memory():
    """Peak resident memory that training the small supernet for 2 epochs adds to a fresh process.

    Linux only: the process resets its peak resident set (``/proc/self/clear_refs``, value 5) after imports,
    data and supernet construction, then reads the new peak (``VmHWM`` in ``/proc/self/status``) after
    training. tracemalloc would miss torch's tensor memory, which is not allocated through Python's
    allocator; ``ru_maxrss`` cannot be reset, so it would also count the import-time peak.
    """
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(Path(__file__).parent)],
        capture_output=True, text=True, check=True, timeout=600,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    delta_mib = (figures["peak_kib"] - figures["rss_before_kib"]) / 1024
    write_figures("supernet_memory", {
        "what": "peak resident memory added by 2 epochs of supernet training (small layout, batch 64, "
                "digits 16x16, 1 thread) in a fresh process, above its resident set after imports, data "
                "and supernet construction",
        "method": "Linux /proc/self/clear_refs reset of VmHWM, then VmHWM after training, in a subprocess",
        "supernet_params": figures["params"],
        "rss_before_training_mib": figures["rss_before_kib"] / 1024,
        "peak_rss_during_training_mib": figures["peak_kib"] / 1024,
        "training_peak_increase_mib": delta_mib,
        "process_ru_maxrss_mib": figures["ru_maxrss_kib"] / 1024,
    })
    assert 0 < delta_mib < 512  # a 0.2M-parameter supernet on 16x16 inputs: tens of MiB expected
