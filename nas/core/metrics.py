"""The metrics every stage names: what a budget may bound and a report plots, and their units."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["COST_METRICS", "METRIC_UNITS"]

# The costs a budget may bound and a report plots, with their units. Lower is better for all of them.
COST_METRICS: tuple[str, ...] = ("latency_ms", "energy_mj", "memory_access_bytes", "mult_adds", "params")
METRIC_UNITS: Mapping[str, str] = {
    "accuracy": "fraction",
    "latency_ms": "ms",
    "energy_mj": "mJ",
    "memory_access_bytes": "bytes",
    "mult_adds": "count",
    "params": "count",
    "elementwise_ops": "count",
}
