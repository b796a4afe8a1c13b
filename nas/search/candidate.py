"""Candidate evaluation: architecture -> extracted subnet -> BN recalibration -> accuracy -> measured cost."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nas.core.data.resolution import ResolutionCache, at_resolution
from nas.search.locks import RWFileLock
from profilers import torch_threads
from supernet import recalibrated_subnet, score_subnet

if TYPE_CHECKING:
    from torch import nn

    from nas.core.data.datasets import DataBundle
    from nas.core.sections import SearchConfig
    from profilers import LatencyResult, OnnxTimer
    from search_spaces import Architecture
    from supernet import Supernet, TrainConfig

__all__ = ["SEARCH_TIMING", "Evaluator", "scored_subnet"]

# Warm-up and minimum sampling window of a candidate's timing (profilers.timing): 50 ms each is a thousand runs
# of a 0.05 ms ONNX Runtime network and fifty of a 1 ms eager one; the interval rule decides the rest.
SEARCH_TIMING: dict[str, float] = {"warmup_time_s": 0.05, "min_time_s": 0.05}


def scored_subnet(
    supernet: Supernet, arch: Architecture, data: DataBundle, train_cfg: TrainConfig, seed: int
) -> nn.Module:
    """The static subnet of ``arch`` exactly as the search scored it (same recalibration batches, same seed).

    `nas export` writes this model, so the exported network is the one whose figures the report shows. The
    training data are taken at the architecture's own resolution, as the search took them.
    """
    data = at_resolution(data, supernet.space.resolution(arch))
    return recalibrated_subnet(
        supernet, arch, data.train, bn_batches=train_cfg.recalibration_batches, batch_size=train_cfg.batch_size,
        seed=seed,
    )


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

    def __post_init__(self) -> None:
        self.views = ResolutionCache(self.data)  # the data at each candidate's resolution, resized once

    def evaluate(self, arch: Architecture) -> dict[str, Any]:
        """Every metric of one candidate, as the fields of a CandidateRecord.

        Scoring, counting and (ONNX Runtime) the export for timing hold the run's timing lock shared; latency
        and energy measurement hold it exclusively, so other workers of the run pause only while a candidate is
        timed.
        """
        from nas.core.stats import encode_correct
        from profilers import count_all, energy_per_inference

        cfg = self.search_cfg
        space = self.supernet.space
        start = time.perf_counter()
        shape = space.input_shape(1, arch)[1:]  # at the architecture's own resolution
        x = torch.zeros((cfg.latency_batch_size, *shape))
        data = self.views(space.resolution(arch))
        timer = None
        with self.lock.shared() if self.lock else contextlib.nullcontext():
            score = score_subnet(
                self.supernet,
                arch,
                data.train,
                data.val,
                bn_batches=self.train_cfg.recalibration_batches,
                batch_size=self.train_cfg.batch_size,
                seed=cfg.seed,
                eval_batch_size=cfg.eval_batch_size,
            )
            model, accuracy, correct = score.model, score.accuracy, score.correct
            assert model is not None and correct is not None
            counts = count_all(model, x)
            scored = time.perf_counter()
            if cfg.latency_backend == "onnxruntime":
                timer = self._onnx_timer(model, shape)
        prepared = time.perf_counter()
        # A noisy measurement is recorded (latency_spread), not printed once per candidate.
        with self.lock.exclusive() if self.lock else contextlib.nullcontext(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*noisy", category=RuntimeWarning)
            lat = self._time(model, shape, timer)
            timed = time.perf_counter()
            energy = None
            if cfg.energy:
                on_device, x_dev = model.to(cfg.device), x.to(cfg.device)
                with torch_threads(cfg.latency_threads), torch.inference_mode():
                    energy = energy_per_inference(
                        lambda: on_device(x_dev),
                        device=cfg.device,
                        mult_adds=counts.mult_adds,
                        memory_access_bytes=counts.memory_access_bytes,
                        dtype_bytes=x.element_size(),
                    )
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
            "latency_quantiles": [float(q) for q in lat.quantiles_ms],
            "latency_ci_low_ms": lat.ci_low_ms,
            "latency_ci_high_ms": lat.ci_high_ms,
            "val_images": int(correct.numel()),
            "val_correct": encode_correct(correct.numpy()),
            "energy_mj": energy.value_mj if energy is not None else math.nan,
            "energy_source": energy.source if energy is not None else "",
            "seconds_score": scored - start,
            "seconds_export": prepared - scored,
            "seconds_timing": timed - prepared,
            "seconds_profile": done - scored,
        }

    def _timing_options(self) -> dict[str, Any]:
        """The search's timing protocol: short warm-up and minimum window (other workers wait meanwhile), then
        samples until the median's interval is within ``latency_ci``, for at most ``latency_max_time_s``."""
        cfg = self.search_cfg
        options: dict[str, Any] = {
            **SEARCH_TIMING,
            "ci_target": cfg.latency_ci,
            "max_time_s": cfg.latency_max_time_s,
        }
        if cfg.latency_repeats:
            options["repeats"] = cfg.latency_repeats
        return options

    def _onnx_timer(self, model: nn.Module, shape: tuple[int, ...]) -> OnnxTimer:
        """The candidate exported for timing and its session (no quiet machine needed for this)."""
        from profilers import onnx_timer

        cfg = self.search_cfg
        return onnx_timer(
            model,
            shape,
            device=cfg.device,
            batch_size=cfg.latency_batch_size,
            threads=cfg.latency_threads,
            exporter=cfg.latency_exporter,
        )

    def _time(self, model: nn.Module, shape: tuple[int, ...], timer: OnnxTimer | None) -> LatencyResult:
        from profilers import measure_latency

        cfg = self.search_cfg
        if timer is not None:
            return timer.time(self._timing_options())
        return measure_latency(
            model,
            shape,
            device=cfg.device,
            backend=cfg.latency_backend,
            batch_size=cfg.latency_batch_size,
            threads=cfg.latency_threads,
            exporter=cfg.latency_exporter,
            **self._timing_options(),
        )
