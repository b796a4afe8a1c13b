"""Audit of any ``nn.Module`` against the ShuffleNetV2 guidelines (G1-G4) and VoVNet's efficiency criterion.

Every finding carries the figures it rests on. Sources:

- Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018, Sec. 2:
  equal channel widths minimise memory access (G1), excessive group convolution increases it (G2), network
  fragmentation reduces parallelism (G3), element-wise operators are non-negligible (G4).
- Lee et al., "An Energy and GPU-Computation Efficient Backbone Network for Real-Time Object Detection"
  (VoVNet), CVPRW 2019: judge layers by computation efficiency, mult-adds per second on the device.

How the audit works: ``collect_layers`` gives one record per executed aten operator (counts, shapes, module
path). A second run under a dispatch mode records which operator reads the output of which (by tensor storage),
giving the data-flow graph G3 needs, and, when ``measure`` is true, the time of every operator on the device (the
median over ``repeats`` runs after one warm-up). Modules, one concept each:

* ``_findings``: :class:`Finding` and :class:`GuidelineReport`;
* ``_tracing``: the operator tracer, the data-flow graph between records, per-operator times;
* ``_channels``: G1 and G2 (channel widths and groups of convolutions);
* ``_fragmentation``: G3 (blocks, fragments in series and in parallel);
* ``_elementwise``: G4 (share of element-wise operators);
* ``_efficiency``: VoVNet (mult-adds per second of compute layers);
* ``_audit``: :func:`audit`, which runs them all.
"""

from __future__ import annotations

from profilers.guidelines._audit import audit
from profilers.guidelines._channels import G1_RATIO_THRESHOLD, G2_RATIO_THRESHOLD, g1_findings, g2_findings
from profilers.guidelines._efficiency import VOVNET_EFFICIENCY_FRACTION, VOVNET_MIN_TIME_SHARE, vovnet_findings
from profilers.guidelines._elementwise import (
    G4_LATENCY_SHARE_THRESHOLD,
    G4_LAYER_SHARE,
    G4_MEMORY_SHARE_THRESHOLD,
    g4_findings,
)
from profilers.guidelines._findings import Finding, Guideline, GuidelineReport, Scope, Severity
from profilers.guidelines._fragmentation import (
    G3_FRAGMENT_THRESHOLD,
    G3_PARALLEL_THRESHOLD,
    find_blocks,
    g3_findings,
)

__all__ = [
    "G1_RATIO_THRESHOLD",
    "G2_RATIO_THRESHOLD",
    "G3_FRAGMENT_THRESHOLD",
    "G3_PARALLEL_THRESHOLD",
    "G4_LATENCY_SHARE_THRESHOLD",
    "G4_LAYER_SHARE",
    "G4_MEMORY_SHARE_THRESHOLD",
    "VOVNET_EFFICIENCY_FRACTION",
    "VOVNET_MIN_TIME_SHARE",
    "Finding",
    "Guideline",
    "GuidelineReport",
    "Scope",
    "Severity",
    "audit",
    "find_blocks",
    "g1_findings",
    "g2_findings",
    "g3_findings",
    "g4_findings",
    "vovnet_findings",
]
