"""The audit: layer records, the traced data-flow graph and operator times, then every guideline's findings."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from profilers.guidelines._channels import G1_RATIO_THRESHOLD, G2_RATIO_THRESHOLD, g1_findings, g2_findings
from profilers.guidelines._efficiency import VOVNET_EFFICIENCY_FRACTION, vovnet_findings
from profilers.guidelines._elementwise import G4_LATENCY_SHARE_THRESHOLD, G4_MEMORY_SHARE_THRESHOLD, g4_findings
from profilers.guidelines._findings import Finding, GuidelineReport
from profilers.guidelines._fragmentation import (
    G3_FRAGMENT_THRESHOLD,
    G3_PARALLEL_THRESHOLD,
    find_blocks,
    g3_findings,
)
from profilers.guidelines._tracing import OperatorEvent, align, as_inputs, record_parents, synchronizer, trace
from profilers.layers import LayerRecord, collect_layers

__all__ = ["audit"]


def _summary(findings: list[Finding]) -> dict[str, Any]:
    """Counts per guideline and severity, the network findings' figures and the thresholds used."""
    counts: dict[str, dict[str, int]] = {}
    for f in findings:
        counts.setdefault(f.guideline, {"info": 0, "warning": 0})[f.severity] += 1
    return {
        "counts": counts,
        "warnings": sum(c["warning"] for c in counts.values()),
        "network": {f.guideline: dict(f.figures) for f in findings if f.scope == "network"},
        "thresholds": {
            "G1_ratio": G1_RATIO_THRESHOLD,
            "G2_ratio": G2_RATIO_THRESHOLD,
            "G3_parallel": G3_PARALLEL_THRESHOLD,
            "G3_fragments": G3_FRAGMENT_THRESHOLD,
            "G4_latency_share": G4_LATENCY_SHARE_THRESHOLD,
            "G4_memory_share": G4_MEMORY_SHARE_THRESHOLD,
            "VoVNet_efficiency_fraction": VOVNET_EFFICIENCY_FRACTION,
        },
    }


def audit(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    layers: list[LayerRecord] | None = None,
    measure: bool = True,
    device: str = "cpu",
    repeats: int = 10,
) -> GuidelineReport:
    """Audit ``model`` on ``inputs`` against G1-G4 and VoVNet; findings come with their figures.

    ``layers`` are the records of ``collect_layers(model, inputs)`` when the caller already has them.
    With ``measure`` the operators are timed on ``device`` (where model and inputs must already be):
    ``repeats`` runs after one warm-up, median per operator; G4's latency share and VoVNet need it.
    Training flags of every submodule are restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
    args = as_inputs(inputs)
    synchronize = synchronizer(device, args)
    records = collect_layers(model, args) if layers is None else list(layers)

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        events = trace(model, args, None)
        runs: list[list[OperatorEvent]] = []
        if measure:
            trace(model, args, synchronize)  # warm-up
            runs = [trace(model, args, synchronize) for _ in range(repeats)]
    finally:
        for module, mode in modes:
            module.training = mode

    matches = align(records, events)
    parents = record_parents(events, matches)
    element_bytes = args[0].element_size()

    findings = g1_findings(records) + g2_findings(records, element_bytes)
    findings += g3_findings(records, parents, find_blocks(model))
    summary: dict[str, Any] = {"measured": measure, "device": device, "operators": len(records)}
    if measure:
        if any(len(run) != len(events) or [e.op for e in run] != [e.op for e in events] for run in runs):
            raise ValueError("the model ran different operators from one run to the next; it must be static")
        medians = [statistics.median(run[j].seconds for run in runs) for j in range(len(events))]
        seconds = [medians[j] for j in matches]
        total = sum(medians)
        findings += g4_findings(records, seconds, total) + vovnet_findings(records, seconds, total)
        summary.update(repeats=repeats, operator_latency_ms=1000.0 * total)
    else:
        findings += g4_findings(records, None, 0.0)
    summary.update(_summary(findings))
    return GuidelineReport(findings=findings, summary=summary)
