"""Named built-in run configurations: partial configs merged over the default, usable as ``--config NAME``.

The default (``nas config``) searches the ``shufflenet`` space. ``efficientnet-small`` and ``nasnet-small`` run
the other spaces end to end on the embedded data within a few minutes on 2 CPU cores: fewer supernet epochs
where a step costs more (EfficientNet's largest path is ~40x its smallest; a NASNet cell holds every operation
for every input). ``strokes`` is the generated task (:mod:`nas.core.data.synthetic`) on which architectures of
the small ShuffleNet layout differ by more than their seed noise, so that ``nas rank`` can tell whether the
supernet's order is right: 3,500 training images (2.8x digits), so the supernet trains 20 epochs instead of 60
(about the same number of steps), and 4,000 validation images (40 %), so that candidates a point apart are told
apart; 2,500 test images (25 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BUILTIN_CONFIGS", "builtin_config_names"]

BUILTIN_CONFIGS: Mapping[str, Mapping[str, Any]] = {
    "efficientnet-small": {
        "name": "efficientnet-small",
        "space": {"name": "efficientnet", "layout": "small"},
        "supernet": {"epochs": 12, "warmup_epochs": 1.0},
        "search": {"trials": 30},
    },
    "strokes": {
        "name": "strokes",
        "data": {"dataset": "strokes", "val_fraction": 0.4, "test_fraction": 0.25},
        "supernet": {"epochs": 20},
    },
    # The NASNet supernet starts from its aligned initialisation (supernet.nasnet.align_cells). lr 0.05
    # (ENAS's) with 4 warm-up epochs: at 0.2 the loss of uniformly sampled cells climbs far above chance and
    # stays there, and 0.1 or a 1-epoch warm-up is worse too; 24 epochs, not 12, lift the median random cell
    # from 81% to 89% on digits (tests/benchmarks/test_nasnet_supernet_benchmarks.py). 5 BN-recalibration
    # batches: on a trained path they score as 20 do, at a quarter of the cost.
    "nasnet-small": {
        "name": "nasnet-small",
        "space": {"name": "nasnet", "layout": "small"},
        "supernet": {"epochs": 24, "warmup_epochs": 4.0, "lr": 0.05, "bn_batches": 5},
        "search": {"trials": 30},
    },
}


def builtin_config_names() -> list[str]:
    return list(BUILTIN_CONFIGS)
