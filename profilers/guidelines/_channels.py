"""G1 and G2 of ShuffleNetV2: channel widths and groups of convolutions, judged by their memory access cost.

Ma et al. (ECCV 2018, Sec. 2) count the memory access cost (MAC in the paper) in elements, assuming a cache large
enough for a layer's feature maps and weights. A 1x1 convolution with c1 in / c2 out channels on an h x w map has
``B = hw c1 c2`` mult-adds and a memory access of ``hw(c1 + c2) + c1 c2 >= 2 sqrt(hw B) + B / hw``, with equality
when c1 = c2 (G1: equal channel widths minimise memory access). With g groups the memory access is
``hw(c1 + c2) + c1 c2 / g``, which at fixed input and fixed B grows with g (G2: excessive group convolution
increases memory access).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from profilers.guidelines._findings import Finding

if TYPE_CHECKING:
    from collections.abc import Sequence

    from profilers.layers import ConvInfo, LayerRecord

__all__ = ["G1_RATIO_THRESHOLD", "G2_RATIO_THRESHOLD", "g1_findings", "g2_findings"]

# G1: warn when a 1x1 convolution's memory access exceeds the bound by more than 10%. At stride 1 with negligible
# weights the ratio is (1 + r) / (2 sqrt(r)) for channel ratio r, so 1.10 is reached near r = 2.4 (1:2
# gives 1.06, 1:3 gives 1.15, 1:4 gives 1.25): the paper's Table 1 measured 1:2 already slower on GPU.
G1_RATIO_THRESHOLD = 1.10
# G2: warn when a grouped (not depthwise) convolution moves more than 10% more memory than the dense
# convolution of equal mult-adds on the same input. Depthwise convolutions are reported as "info": the
# paper handles them under G4, and VoVNet's efficiency figure measures what they cost.
G2_RATIO_THRESHOLD = 1.10


def _spatial(shape: Sequence[int]) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def _conv_traffic(record: LayerRecord, conv: ConvInfo) -> tuple[int, int]:
    """(batch x input positions, batch x output positions) of a convolution record."""
    batch = record.output_shape[0] if record.output_shape else 1
    in_positions = _spatial(record.input_shapes[0]) * batch if record.input_shapes else conv.h * conv.w * batch
    return in_positions, _spatial(record.output_shape) * batch


def g1_findings(records: Sequence[LayerRecord], threshold: float = G1_RATIO_THRESHOLD) -> list[Finding]:
    """G1 for every dense 1x1 convolution: its memory access against the lower bound at the same mult-adds.

    With a = batch x input positions and b = batch x output positions (a = b = hw at stride 1, batch 1), the
    memory access a c1 + b c2 + c1 c2 >= 2 sqrt(a b c1 c2) + c1 c2, the paper's 2 sqrt(hwB) + B/hw.
    """
    findings = []
    for r in records:
        conv = r.conv
        if conv is None or conv.transposed or conv.groups != 1 or any(k != 1 for k in conv.kernel_size):
            continue
        a, b = _conv_traffic(r, conv)
        c1, c2 = conv.in_channels, conv.out_channels
        memory_access = a * c1 + b * c2 + c1 * c2
        bound = 2.0 * math.sqrt(a * b * c1 * c2) + c1 * c2
        ratio = memory_access / bound
        warn = ratio > threshold
        message = (
            f"1x1 conv {c1}->{c2} channels: memory access {ratio:.3f}x the G1 lower bound "
            f"(channel ratio c1/c2 = {c1 / c2:.2f})"
            + ("; equal input and output widths would reach the bound" if warn else "")
        )
        findings.append(
            Finding(
                "G1",
                "layer",
                r.name,
                "warning" if warn else "info",
                message,
                {
                    "in_channels": c1,
                    "out_channels": c2,
                    "channel_ratio": c1 / c2,
                    "mult_adds": r.mult_adds,
                    "memory_access_elements": memory_access,
                    "lower_bound_elements": bound,
                    "ratio_to_bound": ratio,
                    "threshold": threshold,
                },
            )
        )
    return findings


def g2_findings(
    records: Sequence[LayerRecord], element_bytes: int, threshold: float = G2_RATIO_THRESHOLD
) -> list[Finding]:
    """G2 for every grouped convolution: its memory access against the dense one with the same input and mult-adds.

    The dense convolution with the same input, kernel and mult-adds has c2/g output channels, so the difference
    is (batch x output positions) x c2 x (1 - 1/g): the extra output the groups write. ``element_bytes`` converts
    elements to bytes.
    """
    findings = []
    for r in records:
        conv = r.conv
        if conv is None or conv.transposed or conv.groups <= 1:
            continue
        g, c1, c2 = conv.groups, conv.in_channels, conv.out_channels
        a, b = _conv_traffic(r, conv)
        kernel = math.prod(conv.kernel_size)
        weights = kernel * c1 * c2 // g
        memory_access = a * c1 + b * c2 + weights
        dense = a * c1 + b * c2 // g + weights
        extra = memory_access - dense
        ratio = memory_access / dense
        depthwise = conv.depthwise
        warn = not depthwise and ratio > threshold
        what = "depthwise conv" if depthwise else f"grouped conv (g={g})"
        message = (
            f"{what} {c1}->{c2} channels: {extra} more elements moved ({ratio:.2f}x) than a dense conv "
            f"with the same input and mult-adds"
            + ("; depthwise work is judged under G4 and VoVNet" if depthwise else "")
        )
        findings.append(
            Finding(
                "G2",
                "layer",
                r.name,
                "warning" if warn else "info",
                message,
                {
                    "groups": g,
                    "in_channels": c1,
                    "out_channels": c2,
                    "mult_adds": r.mult_adds,
                    "memory_access_elements": memory_access,
                    "dense_memory_access_elements": dense,
                    "extra_memory_access_elements": extra,
                    "extra_memory_access_bytes": extra * element_bytes,
                    "ratio_to_dense": ratio,
                    "depthwise": float(depthwise),
                    "threshold": threshold,
                },
            )
        )
    return findings
