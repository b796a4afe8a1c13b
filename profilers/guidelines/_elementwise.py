"""G4 of ShuffleNetV2: the share of element-wise operators, in measured operator time or else in memory access.

Element-wise operators (ReLU, AddTensor, AddBias ...) have few FLOPs but a heavy memory access, and take
considerable time; so do depthwise convolutions, which have a high memory-access-to-FLOPs ratio (Ma et al.,
ECCV 2018, G4). Here the element-wise operators are activations, additions, multiplications, concatenations,
copies and other point-wise operators without mult-adds; depthwise convolutions and batch norm are reported beside
them, not among them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profilers.guidelines._findings import Finding, share
from profilers.layers import is_normalisation

if TYPE_CHECKING:
    from collections.abc import Sequence

    from profilers.layers import LayerRecord

__all__ = [
    "G4_LATENCY_SHARE_THRESHOLD",
    "G4_LAYER_SHARE",
    "G4_MEMORY_SHARE_THRESHOLD",
    "g4_findings",
    "is_depthwise",
    "is_elementwise",
]

# G4: warn when element-wise operators take 20% or more of the measured operator time (the paper saw
# about 20% speed-up from removing ReLU and shortcut in a ResNet bottleneck), or, unmeasured, 35% or more
# of the memory access (a ReLU after a conv + batch norm of equal widths is about a third of their traffic).
G4_LATENCY_SHARE_THRESHOLD = 0.20
G4_MEMORY_SHARE_THRESHOLD = 0.35
G4_LAYER_SHARE = 0.05  # element-wise operators reported one by one from this share of time (or memory)

_ELEMENTWISE_KINDS = frozenset({"activation", "add", "mul", "concat", "copy"})


def is_elementwise(record: LayerRecord) -> bool:
    """True for the operators G4 counts: element-wise kinds, and point-wise ``other`` operators.

    Normalisations are not among them (their work is in ``elementwise_ops``, but G4 reports batch norm beside the
    element-wise operators, and layer and group norm with neither).
    """
    if record.kind in _ELEMENTWISE_KINDS:
        return True
    return (
        record.kind == "other"
        and record.mult_adds == 0
        and record.elementwise_ops > 0
        and not is_normalisation(record.op)
    )


def is_depthwise(record: LayerRecord) -> bool:
    """True for a depthwise convolution."""
    return record.conv is not None and record.conv.depthwise


def g4_findings(records: Sequence[LayerRecord], seconds: Sequence[float] | None, total_seconds: float) -> list[Finding]:
    """Share of memory access (and of measured time) spent in element-wise operators.

    ``seconds[i]`` is the measured time of record ``i`` and ``total_seconds`` that of every operator run, or
    ``None`` and ``0.0`` when nothing was measured (the share of memory access is judged instead).
    """
    total_memory = sum(r.memory_access_bytes for r in records)
    elementwise = [i for i, r in enumerate(records) if is_elementwise(r)]
    depthwise = [i for i, r in enumerate(records) if is_depthwise(r)]
    batch_norm = [i for i, r in enumerate(records) if r.kind == "batch_norm"]
    figures: dict[str, float] = {
        "elementwise_operators": len(elementwise),
        "elementwise_ops": sum(records[i].elementwise_ops for i in elementwise),
        "elementwise_memory_access_bytes": sum(records[i].memory_access_bytes for i in elementwise),
        "total_memory_access_bytes": total_memory,
    }
    figures["elementwise_memory_share"] = share(figures["elementwise_memory_access_bytes"], total_memory)
    figures["depthwise_memory_share"] = share(sum(records[i].memory_access_bytes for i in depthwise), total_memory)
    figures["batch_norm_memory_share"] = share(sum(records[i].memory_access_bytes for i in batch_norm), total_memory)
    findings: list[Finding] = []
    if seconds is not None:
        figures["elementwise_latency_ms"] = 1000.0 * sum(seconds[i] for i in elementwise)
        figures["total_latency_ms"] = 1000.0 * total_seconds
        figures["elementwise_latency_share"] = share(sum(seconds[i] for i in elementwise), total_seconds)
        figures["depthwise_latency_share"] = share(sum(seconds[i] for i in depthwise), total_seconds)
        figures["batch_norm_latency_share"] = share(sum(seconds[i] for i in batch_norm), total_seconds)
        network_share, basis = figures["elementwise_latency_share"], "operator time"
        threshold = G4_LATENCY_SHARE_THRESHOLD
    else:
        network_share, basis = figures["elementwise_memory_share"], "memory access"
        threshold = G4_MEMORY_SHARE_THRESHOLD
    figures["threshold"] = threshold
    for i in elementwise:
        r = records[i]
        layer = {
            "elementwise_ops": r.elementwise_ops,
            "memory_access_bytes": r.memory_access_bytes,
            "memory_share": share(r.memory_access_bytes, total_memory),
        }
        if seconds is not None:
            layer["latency_ms"] = 1000.0 * seconds[i]
            layer["latency_share"] = share(seconds[i], total_seconds)
        layer_share = layer["latency_share"] if seconds is not None else layer["memory_share"]
        if layer_share >= G4_LAYER_SHARE:
            findings.append(
                Finding(
                    "G4",
                    "layer",
                    r.name,
                    "info",
                    f"element-wise {r.kind} ({r.op}) takes {100 * layer_share:.1f}% of the {basis}",
                    layer,
                )
            )
    warn = network_share >= threshold
    findings.append(
        Finding(
            "G4",
            "network",
            "network",
            "warning" if warn else "info",
            f"element-wise operators ({len(elementwise)}) take {100 * network_share:.1f}% of the {basis}"
            + (
                f"; depthwise convs a further {100 * figures['depthwise_latency_share']:.1f}%"
                if seconds is not None
                else ""
            )
            + ("; fuse or remove activations, additions and copies where accuracy allows" if warn else ""),
            figures,
        )
    )
    return findings
