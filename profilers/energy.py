"""Energy per inference, measured where the hardware has a counter, estimated otherwise.

Three sources, tried in this order; the name of the one used always travels with the number:

- ``"nvml"``: a CUDA device with NVIDIA's NVML bindings (``pip install nvidia-ml-py``). The board's
  cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer) is read before
  and after N synchronised runs; where that counter is not supported the board power
  (``nvmlDeviceGetPowerUsage``) is sampled on a thread and integrated over the runs. See ``_nvml``.
- ``"rapl"``: the CPU, when the Linux powercap tree holds readable RAPL counters (usually root only).
  Package and DRAM zones are read before and after N runs, allowing for counter wrap-around. See
  ``_rapl``.
- ``"model"``: everywhere else, an analytical estimate from the network's counts,
  ``mult_adds x E_mult_add + memory_access_bytes x E_byte``, with constants from Horowitz (ISSCC 2014).

Measured figures are *whole-device* energy divided by the number of runs: they include the device's
static power and whatever else ran on it meanwhile (RAPL: the whole CPU package; NVML: the whole
board). One "inference" is one call of ``run`` (a forward pass of whatever batch the caller built):
divide by the batch size for a per-sample figure.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from profilers import _nvml, _rapl

__all__ = [
    "DRAM_PJ_PER_BYTE",
    "MULT_ADD_PJ",
    "EnergyResult",
    "EnergySource",
    "energy_per_inference",
    "measure_nvml",
    "measure_rapl",
    "model_energy",
]

logger = logging.getLogger(__name__)

EnergySource = Literal["nvml", "rapl", "model"]

# --- Analytical model constants -----------------------------------------------------------------
# M. Horowitz, "Computing's energy problem (and what we can do about it)", IEEE ISSCC 2014, energy
# per operation in a 45 nm process at 0.9 V (the table reused by Han et al., NeurIPS 2015, Fig. 1):
#   8b int add 0.03 pJ, 32b int add 0.1 pJ, 8b int mult 0.2 pJ, 32b int mult 3.1 pJ,
#   16b float add 0.4 pJ, 16b float mult 1.1 pJ, 32b float add 0.9 pJ, 32b float mult 3.7 pJ,
#   32b SRAM read (8 KB) 5 pJ, 32b DRAM read 640 pJ.
HOROWITZ_2014 = "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm"

# One multiply-accumulate = one multiply + one add at the element width. int8 products are
# accumulated in 32 bits (as every int8 GEMM/conv kernel does), hence the 32-bit add.
MULT_ADD_PJ: dict[int, tuple[float, str]] = {
    4: (3.7 + 0.9, "fp32 mult 3.7 pJ + fp32 add 0.9 pJ"),
    2: (1.1 + 0.4, "fp16 mult 1.1 pJ + fp16 add 0.4 pJ"),
    1: (0.2 + 0.1, "int8 mult 0.2 pJ + int32 add 0.1 pJ"),
}

# Memory level charged: off-chip DRAM, 640 pJ per 32-bit read = 160 pJ per byte, whatever the dtype.
# Why DRAM and not an on-chip SRAM: `memory_access_bytes` is ShuffleNetV2's memory access cost,
# which the paper derives "assuming the cache is large enough to store the entire feature maps and
# parameters", i.e. it counts each tensor crossing once between the cache and the memory behind it
# (inputs read, outputs written, weights read). Re-reads served by caches or registers inside a layer
# are not in the count, so charging them the SRAM price would pair a cache-level price with a
# memory-level count. The estimate is therefore an upper bound on devices whose last-level cache
# holds consecutive layers' tensors (small inputs on server CPUs): there the true figure for those
# bytes is nearer the SRAM price (5 pJ per 32 bits, 32x less). `details` reports compute and memory
# parts apart so either can be rescaled.
DRAM_PJ_PER_BYTE = 640.0 / 4
SRAM_PJ_PER_BYTE = 5.0 / 4  # reported in details for rescaling, not charged

_PJ_PER_MJ = 1e9
_NVML_COUNTER_PERIOD_S = 0.1  # the energy counter is updated every 20-100 ms


@dataclass(frozen=True)
class EnergyResult:
    """Energy of one inference in mJ, the source that produced it, and how it was obtained."""

    value_mj: float
    source: EnergySource
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"value": mJ, "source": "nvml"|"rapl"|"model", "details": {...}}``."""
        return {"value": self.value_mj, "source": self.source, "details": _plain(self.details)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < math.inf):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


def model_energy(mult_adds: int, memory_access_bytes: int, dtype_bytes: int = 4) -> EnergyResult:
    """The analytical estimate: ``mult_adds * E_mult_add(dtype) + memory_access_bytes * E_DRAM_byte``."""
    _check_count("mult_adds", mult_adds)
    _check_count("memory_access_bytes", memory_access_bytes)
    if dtype_bytes not in MULT_ADD_PJ:
        raise ValueError(f"dtype_bytes must be one of {sorted(MULT_ADD_PJ)} (int8, fp16, fp32); got {dtype_bytes!r}")
    mult_add_pj, mult_add_note = MULT_ADD_PJ[dtype_bytes]
    compute_mj = mult_adds * mult_add_pj / _PJ_PER_MJ
    memory_mj = memory_access_bytes * DRAM_PJ_PER_BYTE / _PJ_PER_MJ
    details = {
        "method": "mult_adds * pJ_per_mult_add + memory_access_bytes * pJ_per_byte",
        "reference": HOROWITZ_2014,
        "dtype_bytes": dtype_bytes,
        "mult_adds": int(mult_adds),
        "memory_access_bytes": int(memory_access_bytes),
        "pj_per_mult_add": mult_add_pj,
        "pj_per_mult_add_is": mult_add_note,
        "pj_per_byte": DRAM_PJ_PER_BYTE,
        "pj_per_byte_is": "DRAM read 640 pJ per 32 bits",
        "memory_level": "dram",
        "compute_mj": compute_mj,
        "memory_mj": memory_mj,
        "memory_mj_if_sram": memory_access_bytes * SRAM_PJ_PER_BYTE / _PJ_PER_MJ,
    }
    return EnergyResult(value_mj=compute_mj + memory_mj, source="model", details=details)


def _no_sync() -> None:
    return None


def _run_for(run: Callable[[], object], min_time_s: float, synchronize: Callable[[], None]) -> tuple[int, float]:
    """Call ``run`` (then ``synchronize``) until ``min_time_s`` has passed, at least once."""
    iterations = 0
    start = time.perf_counter()
    elapsed = 0.0
    while iterations == 0 or elapsed < min_time_s:
        run()
        synchronize()
        iterations += 1
        elapsed = time.perf_counter() - start
    return iterations, elapsed


def measure_rapl(
    run: Callable[[], object],
    *,
    min_time_s: float = 1.0,
    powercap_root: Path = _rapl.DEFAULT_POWERCAP_ROOT,
) -> EnergyResult:
    """CPU energy per call of ``run`` from the RAPL package + DRAM counters.

    Raises ``RaplUnavailable`` (from ``profilers._rapl``) when the counters cannot be used.
    """
    domains = _rapl.find_domains(powercap_root)
    run()  # warm-up: first-call allocations and lazy initialisation stay out of the window
    before = _rapl.read_counters(domains)
    iterations, elapsed = _run_for(run, min_time_s, _no_sync)
    after = _rapl.read_counters(domains)
    per_domain: dict[str, dict[str, Any]] = {}
    total_uj = 0
    for d in domains:
        delta = _rapl.counter_delta_uj(before[d.zone], after[d.zone], d.max_energy_range_uj)
        total_uj += delta
        per_domain[d.zone] = {
            "name": d.name,
            "kind": d.kind,
            "before_uj": before[d.zone],
            "after_uj": after[d.zone],
            "max_energy_range_uj": d.max_energy_range_uj,
            "wrapped": after[d.zone] < before[d.zone],
            "delta_uj": delta,
        }
    details = {
        "method": "RAPL energy_uj counters (package + dram zones) before/after the runs",
        "powercap_root": str(powercap_root),
        "domains": per_domain,
        "has_dram": any(d.kind == "dram" for d in domains),
        "total_uj": total_uj,
        "iterations": iterations,
        "duration_s": elapsed,
        "average_power_w": total_uj / 1e6 / elapsed if elapsed > 0 else None,
        "scope": "whole CPU package(s) and DRAM: static power and other processes are included",
    }
    return EnergyResult(value_mj=total_uj / 1000.0 / iterations, source="rapl", details=details)


def measure_nvml(
    run: Callable[[], object],
    *,
    device: _nvml.NvmlDevice,
    synchronize: Callable[[], None],
    min_time_s: float = 1.0,
    sample_interval_s: float = 0.02,
) -> EnergyResult:
    """GPU energy per call of ``run`` through NVML, with ``synchronize`` called after every run.

    Uses the total-energy counter when the device supports it, else integrates sampled power.
    Raises ``NvmlUnavailable`` when neither works.
    """
    run()  # warm-up
    synchronize()
    start_mj = device.total_energy_mj()
    details: dict[str, Any] = {"device": device.identified_by}
    if start_mj is not None:
        iterations, elapsed = _run_for(run, min_time_s, synchronize)
        end_mj = device.total_energy_mj()
        if end_mj is None or end_mj < start_mj:
            raise _nvml.NvmlUnavailable(
                f"the NVML energy counter went from {start_mj} to {end_mj} mJ during the measurement"
            )
        energy_mj = float(end_mj - start_mj)
        details.update(
            method="nvmlDeviceGetTotalEnergyConsumption before/after the runs",
            counter_before_mj=start_mj,
            counter_after_mj=end_mj,
        )
        if elapsed < _NVML_COUNTER_PERIOD_S:
            details["note"] = (
                f"the window ({elapsed:.3f} s) is shorter than the counter's update period (20-100 ms): "
                "raise min_time_s for a reliable figure"
            )
    else:
        with _nvml.PowerSampler(device, interval_s=sample_interval_s) as sampler:
            iterations, elapsed = _run_for(run, min_time_s, synchronize)
        energy_mj = sampler.energy_mj()
        times = [t for t, _ in sampler.samples]
        window = max(times) - min(times)
        details.update(
            method="nvmlDeviceGetPowerUsage sampled and integrated (energy counter not supported)",
            samples=len(sampler.samples),
            sample_interval_s=sample_interval_s,
            sampled_window_s=window,
            mean_power_w=energy_mj / 1000.0 / window if window > 0 else None,
            note="power readings are averaged over up to 1 s on recent GPUs: keep min_time_s >= 1",
        )
    details.update(
        energy_mj_total=energy_mj,
        iterations=iterations,
        duration_s=elapsed,
        scope="whole GPU board: static power and other processes on the GPU are included",
    )
    return EnergyResult(value_mj=energy_mj / iterations, source="nvml", details=details)


def _parse_device(device: str) -> tuple[str, int]:
    if not isinstance(device, str):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (a string); got {device!r}")
    if device == "cpu":
        return "cpu", 0
    if device == "cuda":
        return "cuda", -1
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


def _try_nvml(run: Callable[[], object], index: int, min_time_s: float) -> EnergyResult:
    import torch

    if not torch.cuda.is_available():
        raise _nvml.NvmlUnavailable("torch reports no CUDA device")
    if index < 0:
        index = torch.cuda.current_device()
    try:
        uuid: str | None = str(torch.cuda.get_device_properties(index).uuid)
    except (AttributeError, RuntimeError):
        uuid = None
    nvml = _nvml.load_nvml()

    def synchronize() -> None:
        torch.cuda.synchronize(index)

    with _nvml.open_device(nvml, uuid=uuid, index=index) as gpu:
        return measure_nvml(run, device=gpu, synchronize=synchronize, min_time_s=min_time_s)


def energy_per_inference(
    run: Callable[[], object],
    *,
    device: str,
    mult_adds: int,
    memory_access_bytes: int,
    dtype_bytes: int = 4,
    min_time_s: float = 1.0,
    powercap_root: Path = _rapl.DEFAULT_POWERCAP_ROOT,
) -> EnergyResult:
    """Energy in mJ of one call of ``run`` on ``device``, from the best source available.

    ``run`` performs one inference (e.g. ``lambda: model(x)`` inside ``torch.inference_mode``) on
    ``device``; ``mult_adds`` and ``memory_access_bytes`` describe that same inference and feed the
    analytical fallback. NVML is used for ``cuda``/``cuda:N`` when available, RAPL for ``cpu`` when
    ``powercap_root`` holds readable counters, the model otherwise. A measured result also carries the
    model's figure as ``details["model_mj"]``; a model result says in ``details["fallback"]`` (and in
    the log) why no measurement was possible.
    """
    kind, index = _parse_device(device)
    if not (min_time_s > 0 and math.isfinite(min_time_s)):
        raise ValueError(f"min_time_s must be a finite number > 0; got {min_time_s!r}")
    estimate = model_energy(mult_adds, memory_access_bytes, dtype_bytes)  # validates the counts early
    fallback: list[str] = []
    measured: EnergyResult | None = None
    if kind == "cuda":
        try:
            measured = _try_nvml(run, index, min_time_s)
        except _nvml.NvmlUnavailable as err:
            fallback.append(f"nvml: {err}")
            logger.warning("GPU energy not measured, using the analytical model instead: %s", err)
    else:
        try:
            measured = measure_rapl(run, min_time_s=min_time_s, powercap_root=powercap_root)
        except _rapl.RaplUnavailable as err:
            fallback.append(f"rapl: {err}")
            logger.info("CPU energy not measured, using the analytical model instead: %s", err)
    if measured is not None:
        return EnergyResult(measured.value_mj, measured.source, {**measured.details, "model_mj": estimate.value_mj})
    return EnergyResult(estimate.value_mj, estimate.source, {**estimate.details, "fallback": fallback})
