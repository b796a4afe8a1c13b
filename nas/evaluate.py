"""Candidate evaluation: architecture -> extracted subnet -> BN recalibration -> accuracy -> measured cost."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        """Every metric of one candidate, as the fields of a CandidateRecord."""
        from profilers import profile_model

        cfg = self.search_cfg
        space = self.supernet.space
        start = time.perf_counter()
        with self.lock.shared() if self.lock else contextlib.nullcontext():
            model = recalibrated_subnet(self.supernet, arch, self.data, self.train_cfg, cfg.seed)
            accuracy = evaluate(model, self.data.val, cfg.eval_batch_size)
        scored = time.perf_counter()
        shape = space.input_shape(1, arch)[1:]
        # A noisy measurement is recorded (latency_spread), not printed once per candidate.
        with self.lock.exclusive() if self.lock else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*noisy", category=RuntimeWarning)
            profile = profile_model(
                model,
                shape,
                device=cfg.device,
                backend=cfg.latency_backend,
                batch_size=cfg.latency_batch_size,
                threads=cfg.latency_threads,
                latency_options={"repeats": cfg.latency_repeats} if cfg.latency_repeats else None,
                energy=cfg.energy,
            )
        done = time.perf_counter()
        lat = profile.latency
        energy = profile.energy
        return {
            "accuracy": float(accuracy),
            "params": int(profile.params),
            "mult_adds": int(profile.mult_adds),
            "elementwise_ops": int(profile.elementwise_ops),
            "memory_access_bytes": int(profile.memory_access_bytes),
            "latency_ms": lat.median_ms if lat is not None else math.nan,
            "latency_p10_ms": lat.p10_ms if lat is not None else math.nan,
            "latency_p90_ms": lat.p90_ms if lat is not None else math.nan,
            "latency_backend": lat.backend if lat is not None else "",
            "latency_spread": lat.relative_spread if lat is not None else math.nan,
            "energy_mj": energy.value_mj if energy is not None else math.nan,
            "energy_source": energy.source if energy is not None else "",
            "seconds_score": scored - start,
            "seconds_profile": done - scored,
        }
