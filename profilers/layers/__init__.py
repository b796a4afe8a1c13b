"""Per-operator layer records of any ``nn.Module``, collected by running it once.

One record per executed aten operator (convolutions, matrix products, batch norm, activations, additions,
concatenations, copies, pooling ...), attributed to the innermost module running it, with its parameters,
mult-adds, element-wise work and memory access. Modules:

* :mod:`~profilers.layers._records`: the :class:`LayerRecord` and :class:`ConvInfo` dataclasses;
* :mod:`~profilers.layers._operators`: which aten operator is which kind;
* :mod:`~profilers.layers._costs`: the counting rules for mult-adds and element-wise work;
* :mod:`~profilers.layers._recorder`: the dispatch-mode recorder, memory access, :func:`collect_layers`.

Other modules of :mod:`profilers` import from this face only; outside :mod:`profilers`, ``from profilers import
LayerRecord, collect_layers`` is enough.
"""

from __future__ import annotations

from profilers.layers._costs import attention_mult_adds, multi_head_attention_mult_adds
from profilers.layers._operators import is_normalisation
from profilers.layers._recorder import collect_layers, storage_key
from profilers.layers._records import LAYER_KINDS, ConvInfo, LayerRecord

__all__ = [
    "LAYER_KINDS",
    "ConvInfo",
    "LayerRecord",
    "attention_mult_adds",
    "collect_layers",
    "is_normalisation",
    "multi_head_attention_mult_adds",
    "storage_key",
]
