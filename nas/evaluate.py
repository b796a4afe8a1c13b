"""Candidate evaluation: architecture -> extracted subnet -> BN recalibration -> accuracy -> measured cost."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nas.locks import RWFileLock
from supernet import evaluate, recalibrate_bn
from supernet.bn import batch_norm_layers

if TYPE_CHECKING:
    from torch import nn

    from nas.data import DataBundle
    from nas.search_config import SearchConfig
    from search_spaces import Architecture
    from supernet import Supernet, TrainConfig

__all__ = ["Evaluator", "recalibrated_subnet"]


def recalibrated_subnet(
    supernet: Supernet, arch: Architecture, data: DataBundle, train_cfg: TrainConfig, seed: int
) -> nn.Module:
    """The static subnet of ``arch`` with BN statistics recomputed on training data (DetNAS).

    The batches come from ``seed`` alone, so the same call always gives the same statistics: the model that
    `nas export` writes is the one the search scored.
    """
    from nas.data import make_loader

    model = supernet.extract(arch)
    batches = train_cfg.recalibration_batches
    if batches is not None and batch_norm_layers(model):
        loader = make_loader(data.train, train_cfg.batch_size, shuffle=True, seed=seed)
        recalibrate_bn(model, loader, batches)
    return model.eval()


@dataclass
class Evaluator:
    """Scores candidates of one run. Built once per worker: the supernet and the data are loaded once."""

    supernet: Supernet
    data: DataBundle
    train_cfg: TrainConfig
    search_cfg: SearchConfig
    # The run's timing lock: scoring holds it shared, latency and energy measurement exclusively, so that
    # nothing else of this run is busy while a candidate is timed.
    lock: RWFileLock | None = None

    def evaluate(self, arch: Architecture) -> dict[str, Any]:
        """Every metric of one candidate, as the fields of a CandidateRecord.

        Scoring and counting hold the run's timing lock shared; latency and energy measurement hold it
        exclusively, so other workers of the run pause only while a candidate is timed.
        """
        from profilers import count_all, energy_per_inference, measure_latency

        cfg = self.search_cfg
        space = self.supernet.space
        start = time.perf_counter()
        shape = space.input_shape(1, arch)[1:]
        x = torch.zeros((cfg.latency_batch_size, *shape))
        with self.lock.shared() if self.lock else contextlib.nullcontext():
            model = recalibrated_subnet(self.supernet, arch, self.data, self.train_cfg, cfg.seed)
            accuracy = evaluate(model, self.data.val, cfg.eval_batch_size)
            counts = count_all(model, x)
        scored = time.perf_counter()
        options: dict[str, Any] = {"repeats": cfg.latency_repeats} if cfg.latency_repeats else {}
        # A noisy measurement is recorded (latency_spread), not printed once per candidate.
        with self.lock.exclusive() if self.lock else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*noisy", category=RuntimeWarning)
            lat = measure_latency(
                model,
                shape,
                device=cfg.device,
                backend=cfg.latency_backend,
                batch_size=cfg.latency_batch_size,
                threads=cfg.latency_threads,
                **options,
            )
            energy = None
            if cfg.energy:
                previous = torch.get_num_threads()
                on_device, x_dev = model.to(cfg.device), x.to(cfg.device)
                try:
                    torch.set_num_threads(cfg.latency_threads)
                    with torch.inference_mode():
                        energy = energy_per_inference(
                            lambda: on_device(x_dev),
                            device=cfg.device,
                            mult_adds=counts.mult_adds,
                            memory_access_bytes=counts.memory_access_bytes,
                            dtype_bytes=x.element_size(),
                        )
                finally:
                    torch.set_num_threads(previous)
        done = time.perf_counter()
        return {
            "accuracy": float(accuracy),
            "params": int(counts.params),
            "mult_adds": int(counts.mult_adds),
            "elementwise_ops": int(counts.elementwise_ops),
            "memory_access_bytes": int(counts.memory_access_bytes),
            "latency_ms": lat.median_ms,
            "latency_p10_ms": lat.p10_ms,
            "latency_p90_ms": lat.p90_ms,
            "latency_backend": lat.backend,
            "latency_spread": lat.relative_spread,
            "energy_mj": energy.value_mj if energy is not None else math.nan,
            "energy_source": energy.source if energy is not None else "",
            "seconds_score": scored - start,
            "seconds_profile": done - scored,
        }
