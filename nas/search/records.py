"""Candidate records: one per evaluated architecture, kept in the Optuna storage and mirrored to trials.csv."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.core.errors import UsageError
from nas.core.metrics import COST_METRICS, METRIC_UNITS

if TYPE_CHECKING:
    from nas.core.run_dir import RunDir

__all__ = ["COST_METRICS", "METRIC_UNITS", "CandidateRecord", "read_trials_csv", "run_records", "write_trials_csv"]

@dataclass
class CandidateRecord:
    """Everything known about one candidate. Flat and JSON-friendly, so it is also one CSV row."""

    trial: int
    arch_id: str
    arch: dict[str, Any]
    status: str  # "COMPLETE", "FAIL", "RUNNING", "PRUNED"
    worker: str = ""
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    duration_s: float = math.nan
    accuracy: float = math.nan  # validation accuracy after BN recalibration, in [0, 1]
    params: int = 0
    mult_adds: int = 0
    elementwise_ops: int = 0
    memory_access_bytes: int = 0
    latency_ms: float = math.nan  # median
    latency_p10_ms: float = math.nan
    latency_p90_ms: float = math.nan
    latency_backend: str = ""
    latency_spread: float = math.nan  # IQR / median of the timed runs: above 0.1 the figure is noisy
    # The latency distribution: quantiles of the timed samples every 5 % (profilers.timing.QUANTILE_LEVELS) and
    # the 95 % interval of the median; P(latency <= bound) is read from the quantiles.
    latency_quantiles: list[float] = field(default_factory=list)
    latency_ci_low_ms: float = math.nan
    latency_ci_high_ms: float = math.nan
    # Per-image correctness on the validation split (nas.core.stats.encode_correct), for intervals and paired tests.
    val_images: int = 0
    val_correct: str = ""
    energy_mj: float = math.nan
    energy_source: str = ""
    feasible: bool = True  # meets every budget of the search
    violations: dict[str, float] = field(default_factory=dict)  # budget metric -> amount over the budget (> 0)
    error: str = ""

    def metrics(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
            "memory_access_bytes": float(self.memory_access_bytes),
            "mult_adds": float(self.mult_adds),
            "params": float(self.params),
            "elementwise_ops": float(self.elementwise_ops),
        }

    def budget_metrics(self) -> dict[str, Any]:
        """``metrics()`` with what a budget with a confidence reads: the latency quantiles and 90th percentile."""
        return {**self.metrics(), "latency_quantiles": list(self.latency_quantiles), "latency_p90_ms": self.latency_p90_ms}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_row(self) -> dict[str, str]:
        row: dict[str, str] = {}
        for key, value in self.to_dict().items():
            row[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> CandidateRecord:
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in row:
                continue
            text = row[f.name]
            if f.name in ("arch", "violations"):
                values[f.name] = json.loads(text) if text else {}
            elif f.name == "latency_quantiles":
                values[f.name] = [float(v) for v in json.loads(text)] if text else []
            elif f.name in ("trial", "params", "mult_adds", "elementwise_ops", "memory_access_bytes", "val_images"):
                values[f.name] = int(float(text)) if text else 0
            elif f.name in (
                "duration_s", "accuracy", "latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread", "energy_mj",
                "latency_ci_low_ms", "latency_ci_high_ms",
            ):  # fmt: skip
                values[f.name] = float(text) if text else math.nan
            elif f.name == "feasible":
                values[f.name] = text == "True"
            else:
                values[f.name] = text
        return cls(**values)


_COLUMNS = [f.name for f in fields(CandidateRecord)]


def write_trials_csv(records: Iterable[CandidateRecord], path: Path) -> None:
    """Write all records, sorted by trial number, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        for record in sorted(records, key=lambda r: r.trial):
            writer.writerow(record.to_row())
    tmp.replace(path)


def read_trials_csv(path: Path) -> list[CandidateRecord]:
    if not path.is_file():
        raise ValueError(f"{path} does not exist: no search has written candidates in this run yet")
    records = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                try:
                    records.append(CandidateRecord.from_row(row))
                except (ValueError, TypeError, KeyError) as err:
                    raise ValueError(f"{path} line {reader.line_num} is damaged ({type(err).__name__})") from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__})") from None
    return records


def run_records(run: RunDir) -> list[CandidateRecord]:
    """The run's candidates from trials.csv; a missing or damaged file is bad input naming what to run."""
    try:
        return read_trials_csv(run.trials_csv)
    except ValueError as err:
        hint = "rewrites it from the study" if run.trials_csv.is_file() else "writes it"
        raise UsageError(f"{err}; 'nas search --run {run.root}' {hint}") from None
