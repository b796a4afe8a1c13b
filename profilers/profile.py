"""One profile of one static model on one device: counts, memory access, latency, energy and guideline audit.

Every figure describes one inference of ``batch_size`` samples of shape ``input_shape`` in ``dtype`` on
``device``: the counts are taken on that same input (so ``mult_adds`` is per image at batch size 1, the usual
convention of published tables).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from profilers.counts import count_all
from profilers.energy import EnergyResult, energy_per_inference
from profilers.guidelines import Finding, audit
from profilers.latency import check_request, prepared_model
from profilers.latency import measure_latency as _measure_latency
from profilers.layers import LayerRecord
from profilers.threads import torch_threads
from profilers.timing import LatencyResult

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Profile", "profile_model"]

_LATENCY_RENAMES = (
    ("median_ms", "median"),
    ("p10_ms", "p10"),
    ("p90_ms", "p90"),
    ("iqr_ms", "iqr"),
    ("mean_ms", "mean"),
    ("min_ms", "min"),
)


def _latency_to_json(latency: LatencyResult) -> dict[str, Any]:
    data = latency.to_dict()
    for long, short in _LATENCY_RENAMES:
        data[short] = data.pop(long)
    return data


def _latency_from_json(data: dict[str, Any]) -> LatencyResult:
    restored = dict(data)
    for long, short in _LATENCY_RENAMES:
        restored[long] = restored.pop(short)
    return LatencyResult.from_dict(restored)


def _energy_from_json(data: dict[str, Any]) -> EnergyResult:
    source = str(data["source"])
    if source not in ("nvml", "rapl", "model"):
        raise ValueError(f"energy_mj.source must be one of ['nvml', 'rapl', 'model'], got {source!r}")
    return EnergyResult(value_mj=float(data["value"]), source=source, details=dict(data.get("details", {})))  # type: ignore[arg-type]


def _finding_from_json(data: dict[str, Any]) -> Finding:
    return Finding(
        guideline=data["guideline"],
        scope=data["scope"],
        name=str(data["name"]),
        severity=data["severity"],
        message=str(data["message"]),
        figures={str(k): float(v) for k, v in data.get("figures", {}).items()},
    )


@dataclass
class Profile:
    """Everything measured about one model; serialises to plain JSON (``to_dict``/``to_json``/``from_dict``)."""

    params: int
    mult_adds: int
    elementwise_ops: int
    memory_access_bytes: int
    input_shape: tuple[int, ...]
    batch_size: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    latency: LatencyResult | None = None
    energy: EnergyResult | None = None
    guidelines: list[Finding] | None = None
    guideline_summary: dict[str, Any] | None = None
    layers: list[LayerRecord] = field(default_factory=list)

    def to_dict(self, *, include_layers: bool = False) -> dict[str, Any]:
        """Plain JSON data. ``latency_ms`` and ``energy_mj`` are ``None`` when not measured, ``guidelines`` is
        an empty list when not audited; ``layers`` is included only on request (it can be long)."""
        data: dict[str, Any] = {
            "params": self.params,
            "mult_adds": self.mult_adds,
            "elementwise_ops": self.elementwise_ops,
            "memory_access_bytes": self.memory_access_bytes,
            "input_shape": list(self.input_shape),
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "device": self.device,
            "latency_ms": None if self.latency is None else _latency_to_json(self.latency),
            "energy_mj": None if self.energy is None else self.energy.to_dict(),
            "guidelines": [] if self.guidelines is None else [f.to_dict() for f in self.guidelines],
            "guidelines_audited": self.guidelines is not None,
            "guideline_summary": self.guideline_summary,
        }
        if include_layers:
            data["layers"] = [r.to_dict() for r in self.layers]
        return data

    def to_json(self, *, include_layers: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(include_layers=include_layers), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        missing = [k for k in ("params", "mult_adds", "elementwise_ops", "memory_access_bytes") if k not in data]
        if missing:
            raise ValueError(
                f"profile data lacks the keys {missing}; required: params, mult_adds, "
                "elementwise_ops, memory_access_bytes"
            )
        latency = data.get("latency_ms")
        energy = data.get("energy_mj")
        findings = data.get("guidelines") or []
        audited = bool(data.get("guidelines_audited", bool(findings)))
        return cls(
            params=int(data["params"]),
            mult_adds=int(data["mult_adds"]),
            elementwise_ops=int(data["elementwise_ops"]),
            memory_access_bytes=int(data["memory_access_bytes"]),
            input_shape=tuple(int(v) for v in data.get("input_shape", ())),
            batch_size=int(data.get("batch_size", 1)),
            dtype=str(data.get("dtype", "float32")),
            device=str(data.get("device", "cpu")),
            latency=None if latency is None else _latency_from_json(latency),
            energy=None if energy is None else _energy_from_json(energy),
            guidelines=[_finding_from_json(f) for f in findings] if audited else None,
            guideline_summary=data.get("guideline_summary"),
            layers=[LayerRecord.from_dict(r) for r in data.get("layers", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls.from_dict(json.loads(text))


def profile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str = "cpu",
    backend: str = "eager",
    batch_size: int = 1,
    dtype: str = "float32",
    measure_latency: bool = True,
    latency_options: dict[str, Any] | None = None,
    energy: bool = False,
    energy_min_time_s: float = 1.0,
    guidelines: bool = False,
    guidelines_measure: bool = True,
    threads: int | None = None,
    seed: int = 0,
) -> Profile:
    """Profile ``model`` on a ``(batch_size, *input_shape)`` input (``input_shape`` has no batch dimension).

    ``latency_options`` go to :func:`profilers.latency.measure_latency` (``repeats``, ``warmup``,
    ``min_time_s`` ...). ``energy`` adds :func:`profilers.energy.energy_per_inference` of the eager model;
    ``guidelines`` adds :func:`profilers.guidelines.audit` (operators timed when ``guidelines_measure``).
    ``threads`` (default: the current ``torch.get_num_threads()``) is used for every timed part and restored.
    The caller's model is neither moved, cast nor left in eval mode.
    """
    dev, dtype_name, torch_dtype, shape = check_request(model, input_shape, device, backend, dtype)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if threads is None:
        threads = torch.get_num_threads()
    options = dict(latency_options or {})
    clashing = sorted(set(options) & {"device", "backend", "batch_size", "dtype", "threads"})
    if clashing:
        raise ValueError(f"latency_options may not set {clashing}: pass them to profile_model itself")

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *shape), generator=generator).to(device=dev, dtype=torch_dtype)
    energy_result: EnergyResult | None = None
    findings: list[Finding] | None = None
    summary: dict[str, Any] | None = None
    with torch_threads(threads), prepared_model(model, dev, torch_dtype) as ready:
        counts = count_all(ready, x)
        if energy:
            with torch.inference_mode():
                energy_result = energy_per_inference(
                    lambda: ready(x),
                    device=str(dev),
                    mult_adds=counts.mult_adds,
                    memory_access_bytes=counts.memory_access_bytes,
                    dtype_bytes=x.element_size(),
                    min_time_s=energy_min_time_s,
                )
        if guidelines:
            report = audit(ready, x, layers=counts.layers, measure=guidelines_measure, device=str(dev))
            findings, summary = list(report.findings), dict(report.summary)
    latency = None
    if measure_latency:
        latency = _measure_latency(
            model,
            shape,
            device=str(dev),
            backend=backend,
            batch_size=batch_size,
            dtype=dtype_name,
            threads=threads,
            seed=seed,
            **options,
        )
    return Profile(
        params=counts.params,
        mult_adds=counts.mult_adds,
        elementwise_ops=counts.elementwise_ops,
        memory_access_bytes=counts.memory_access_bytes,
        input_shape=shape,
        batch_size=batch_size,
        dtype=dtype_name,
        device=str(dev),
        latency=latency,
        energy=energy_result,
        guidelines=findings,
        guideline_summary=summary,
        layers=counts.layers,
    )
