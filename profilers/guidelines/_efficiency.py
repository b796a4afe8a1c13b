"""VoVNet's criterion: computation efficiency, mult-adds per second on the device, of every compute layer.

Lee et al., "An Energy and GPU-Computation Efficient Backbone Network for Real-Time Object Detection" (VoVNet),
CVPRW 2019: judge layers by computation efficiency rather than by mult-adds alone; depthwise convolutions have low
efficiency. Needs measured operator times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profilers.guidelines._elementwise import G4_LATENCY_SHARE_THRESHOLD, is_depthwise
from profilers.guidelines._findings import Finding, share

if TYPE_CHECKING:
    from collections.abc import Sequence

    from profilers.layers import LayerRecord

__all__ = ["VOVNET_EFFICIENCY_FRACTION", "VOVNET_MIN_TIME_SHARE", "vovnet_findings"]

# VoVNet: a layer is flagged when its mult-adds per second are below a quarter of the network's compute
# layers taken together; flagged layers under 1% of the time stay "info". The network finding warns when the
# flagged layers take G4's latency share or more.
VOVNET_EFFICIENCY_FRACTION = 0.25
VOVNET_MIN_TIME_SHARE = 0.01

_COMPUTE_KINDS = frozenset({"conv", "linear", "matmul"})


def vovnet_findings(records: Sequence[LayerRecord], seconds: Sequence[float], total_seconds: float) -> list[Finding]:
    """Computation efficiency (mult-adds per second) of each compute layer against the network's.

    ``seconds[i]`` is the measured time of record ``i``, ``total_seconds`` that of every operator run.
    """
    compute = [i for i, r in enumerate(records) if r.kind in _COMPUTE_KINDS and r.mult_adds > 0 and seconds[i] > 0]
    compute_seconds = sum(seconds[i] for i in compute)
    compute_mult_adds = sum(records[i].mult_adds for i in compute)
    reference = share(compute_mult_adds, compute_seconds)
    findings: list[Finding] = []
    flagged_seconds = 0.0
    for i in compute:
        r = records[i]
        efficiency = r.mult_adds / seconds[i]
        relative = share(efficiency, reference)
        if relative >= VOVNET_EFFICIENCY_FRACTION:
            continue
        time_share = share(seconds[i], total_seconds)
        flagged_seconds += seconds[i]
        what = "depthwise conv" if is_depthwise(r) else r.kind
        findings.append(
            Finding(
                "VoVNet",
                "layer",
                r.name,
                "warning" if time_share >= VOVNET_MIN_TIME_SHARE else "info",
                f"{what}: {efficiency / 1e9:.3f} G mult-adds/s, {relative:.2f}x the network's compute layers, "
                f"{100 * time_share:.1f}% of the operator time",
                {
                    "mult_adds": r.mult_adds,
                    "latency_ms": 1000.0 * seconds[i],
                    "mult_adds_per_s": efficiency,
                    "relative_efficiency": relative,
                    "latency_share": time_share,
                    "depthwise": float(is_depthwise(r)),
                },
            )
        )
    total_mult_adds = sum(r.mult_adds for r in records)
    flagged_share = share(flagged_seconds, total_seconds)
    findings.append(
        Finding(
            "VoVNet",
            "network",
            "network",
            "warning" if flagged_share >= G4_LATENCY_SHARE_THRESHOLD else "info",
            f"compute layers run at {reference / 1e9:.3f} G mult-adds/s; {len(findings)} layers fall below "
            f"{VOVNET_EFFICIENCY_FRACTION:.2f}x of that and take {100 * flagged_share:.1f}% of the operator time",
            {
                "compute_layers": len(compute),
                "compute_mult_adds_per_s": reference,
                "network_mult_adds_per_s": share(total_mult_adds, total_seconds),
                "low_efficiency_layers": len(findings),
                "low_efficiency_latency_share": flagged_share,
                "efficiency_fraction": VOVNET_EFFICIENCY_FRACTION,
            },
        )
    )
    return findings
