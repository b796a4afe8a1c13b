"""``SearchConfig``: how candidates are searched and measured (the ``search:`` section of a run config)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas.core.budgets import normalise_budgets
from nas.core.metrics import COST_METRICS

__all__ = ["DEFAULT_REPORT_LATENCY", "RankingConfig", "ReportConfig", "SearchConfig", "default_threads_per_worker"]

# The default report budget on latency: a share of the most accurate candidate's latency (see ReportConfig).
DEFAULT_REPORT_LATENCY = "125% of fastest"


def default_threads_per_worker(workers: int) -> int:
    """``cores // workers`` (at least 1): two PyTorch processes fighting over the same cores slow down 10-80x."""
    return max(1, (os.cpu_count() or 1) // workers)


class SearchConfig(BaseModel):
    """The search: engine, Optuna sampler, objectives, budgets, and how each candidate is measured.

    Budgets are upper bounds on *measured* metrics, given to Optuna as constraints
    (``trial.set_constraint``: feasible when ``value - budget <= 0``), so infeasible candidates never win.
    Syntax in :mod:`nas.core.budgets` (absolute, or ``{max: ..., confidence: ...}`` for latency; relative budgets
    are for the report only).

    Latency is measured by default on ONNX Runtime (``latency_backend``), the runtime the winner ships in: the
    candidate is exported with ``latency_exporter`` (TorchScript: a few tenths of a second; its graph optimises
    to the same ONNX Runtime kernels as the shipped dynamo export) while other workers go on, and only the timing
    itself holds the exclusive timing lock. ``latency_ci`` and ``latency_max_time_s`` are the stopping rule of
    the timing protocol (``profilers.timing``): sample until the median's 95 % interval is within +/- that share,
    for at most that long.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # "1" is not 1, as the README promises

    engine: Literal["optuna", "ray"] = "optuna"
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    objectives: tuple[str, ...] = Field(("accuracy", "latency_ms"), strict=False)  # a YAML list becomes the tuple
    budgets: dict[str, Any] = Field(default_factory=dict)
    trials: int = Field(40, ge=1)  # finished candidates wanted (distinct architectures)
    workers: int = Field(1, ge=1)
    # None: an Optuna journal file in the run directory. Else an RDB URL ("sqlite:///x.db", "postgresql://...").
    storage: str | None = None
    # Liveness of trials in an RDB storage (Optuna's heartbeat): every worker records a heartbeat for its running
    # trial each `heartbeat_interval` seconds; a trial silent for `heartbeat_grace` seconds is failed and retried.
    heartbeat_interval: int = Field(10, ge=1)
    heartbeat_grace: int = Field(60, ge=2)
    seed: int = 0
    population_size: int = Field(16, ge=2)  # NSGA-II
    # Measurement of each candidate on the target device.
    device: Literal["cpu", "cuda"] = "cpu"
    latency_backend: Literal["eager", "onnxruntime"] = "onnxruntime"
    latency_exporter: Literal["torchscript", "dynamo", "auto"] = "torchscript"
    latency_ci: float = Field(0.01, ge=0, lt=1)
    latency_max_time_s: float = Field(0.5, gt=0)
    latency_batch_size: int = Field(1, ge=1)
    latency_threads: int = Field(1, ge=1)  # fixed, so that latencies compare across worker counts
    latency_repeats: int | None = Field(None, ge=3)  # None: the profiler's adaptive default
    exclusive_timing: bool = True  # other workers pause while one times latency (nothing else busy)
    energy: bool = True
    eval_batch_size: int = Field(256, ge=1)
    # With a latency_ms budget, a per-device latency table (run_dir/latency_table.json) predicts each proposal's
    # latency and candidates predicted over budget * (1 + margin) are skipped before evaluation (engine optuna).
    latency_table: bool = True
    latency_table_margin: float = Field(0.2, ge=0)
    # Engine ray (nas.search.ray.engine).
    ray_address: str | None = None  # an existing cluster ("HEAD:6379"); None: a local cluster of `workers` CPUs
    ray_storage_path: str | None = None  # Ray's temporary folder (local cluster) and Tune's results; None: <run>/ray
    ray_dashboard: bool = False  # start the dashboard with a local cluster
    max_failures: int = Field(3, ge=0)  # retries of a Ray trial whose worker process or node died

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or value[0] != "accuracy":
            raise ValueError(f"objectives must start with 'accuracy', got {list(value)}")
        bad = [m for m in value[1:] if m not in COST_METRICS]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"unknown or repeated objective(s) {bad or list(value)}; allowed after 'accuracy': {list(COST_METRICS)}")
        return value

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return normalise_budgets(value, allow_relative=False)

    @model_validator(mode="after")
    def _grace_over_interval(self) -> SearchConfig:
        if self.heartbeat_grace <= self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_grace ({self.heartbeat_grace} s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval} s), or live trials would be failed"
            )
        return self

    @model_validator(mode="after")
    def _energy_when_needed(self) -> SearchConfig:
        uses_energy = "energy_mj" in self.objectives or "energy_mj" in self.budgets
        if uses_energy and not self.energy:
            raise ValueError("energy_mj is an objective or budget but energy: false")
        return self

    def threads_per_worker(self) -> int:
        return default_threads_per_worker(self.workers)


class ReportConfig(BaseModel):
    """What the report selects: the best candidate under each of these budgets (metric -> upper bound).

    The built-in default is relative: latency at most 1.25x the fastest candidate's (``nas.core.budgets``).
    An absolute default (it was 1.1 ms) is met by a third of the candidates on one CPU and by none on another of
    the same kind; a share of what this run measured is met on any machine by the faster networks the search
    found (at least by the fastest), so the first run ends with a winner: the most accurate network within a
    quarter of the fastest one's latency. Absolute budgets (``latency_ms: 1.1``) and confidences
    (``{max: 1.0, confidence: 0.95}``) are for when the device and its figures are known.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    budgets: dict[str, Any] = Field(default_factory=lambda: {"latency_ms": DEFAULT_REPORT_LATENCY})

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return normalise_budgets(value, allow_relative=True)


class RankingConfig(BaseModel):
    """The quick ranking check that ends ``nas run`` (``nas rank`` with these settings; see nas.ranking).

    A few architectures, one seed, few epochs: it bounds what the supernet's order can be trusted for, with a
    wide interval. ``quick_check: false`` leaves it out (the report then says how to run the full check).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quick_check: bool = True
    archs: int = Field(4, ge=2)
    seeds: int = Field(1, ge=1)
    epochs: int = Field(3, ge=1)
