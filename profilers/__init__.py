"""Measuring any static ``torch.nn.Module``: counts, memory access, latency, energy, guideline audit, latency tables.

This package knows nothing of search spaces: every function takes a plain module and an input shape.
"""

from profilers.counts import (
    Counts,
    count_all,
    count_elementwise_ops,
    count_memory_access_bytes,
    count_mult_adds,
    count_params,
)
from profilers.energy import EnergyResult, energy_per_inference, model_energy
from profilers.guidelines import Finding, GuidelineReport, audit, find_blocks
from profilers.latency import BACKENDS, DTYPES, LatencyResult, cpu_name, device_name, measure_latency
from profilers.layers import LAYER_KINDS, ConvInfo, LayerRecord, collect_layers
from profilers.lut import STATISTICS, LatencyEntry, LatencyTable
from profilers.profile import Profile, profile_model

__all__ = [
    "BACKENDS",
    "DTYPES",
    "LAYER_KINDS",
    "STATISTICS",
    "ConvInfo",
    "Counts",
    "EnergyResult",
    "Finding",
    "GuidelineReport",
    "LatencyEntry",
    "LatencyResult",
    "LatencyTable",
    "LayerRecord",
    "Profile",
    "audit",
    "collect_layers",
    "count_all",
    "count_elementwise_ops",
    "count_memory_access_bytes",
    "count_mult_adds",
    "count_params",
    "cpu_name",
    "device_name",
    "energy_per_inference",
    "find_blocks",
    "measure_latency",
    "model_energy",
    "profile_model",
]
