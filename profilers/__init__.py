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
from profilers.latency import BACKENDS, DTYPES, measure_latency
from profilers.layers import LAYER_KINDS, ConvInfo, LayerRecord, collect_layers
from profilers.lut import STATISTICS, LatencyEntry, LatencyTable, fit_line
from profilers.onnx import ExportInfo, check_model_and_batch, eval_mode, export_onnx, model_device, onnx_session
from profilers.onnx_timing import TIMING_OPTIONS, OnnxTimer, onnx_timer, time_onnx_session, timing_options
from profilers.profile import Profile, profile_model
from profilers.threads import child_thread_environment, configure_worker_threads, torch_threads
from profilers.timing import (
    PROTOCOL,
    QUANTILE_LEVELS,
    LatencyResult,
    collect_samples,
    cpu_name,
    device_name,
    gc_paused,
    latency_from_samples,
    median_ci,
    prob_at_most,
    quantile_at,
)

__all__ = [
    "BACKENDS",
    "DTYPES",
    "LAYER_KINDS",
    "PROTOCOL",
    "QUANTILE_LEVELS",
    "STATISTICS",
    "TIMING_OPTIONS",
    "ConvInfo",
    "Counts",
    "EnergyResult",
    "ExportInfo",
    "Finding",
    "GuidelineReport",
    "LatencyEntry",
    "LatencyResult",
    "LatencyTable",
    "LayerRecord",
    "OnnxTimer",
    "Profile",
    "audit",
    "check_model_and_batch",
    "child_thread_environment",
    "collect_layers",
    "collect_samples",
    "configure_worker_threads",
    "count_all",
    "count_elementwise_ops",
    "count_memory_access_bytes",
    "count_mult_adds",
    "count_params",
    "cpu_name",
    "device_name",
    "energy_per_inference",
    "eval_mode",
    "export_onnx",
    "find_blocks",
    "fit_line",
    "gc_paused",
    "latency_from_samples",
    "measure_latency",
    "median_ci",
    "model_device",
    "model_energy",
    "onnx_session",
    "onnx_timer",
    "prob_at_most",
    "profile_model",
    "quantile_at",
    "time_onnx_session",
    "timing_options",
    "torch_threads",
]
