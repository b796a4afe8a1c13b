"""Where the benchmarks write their figures: ``results/benchmarks/NAME.json``, with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"


def write_figures(name: str, figures: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        **figures,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
        },
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
