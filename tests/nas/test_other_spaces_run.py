"""`nas run` end to end on the efficientnet and nasnet spaces (small layouts, tiny settings).

Training, search, report and export as on the default space; on efficientnet every candidate satisfies the
compound constraint and the exported ONNX input has the winner's own resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from nas.cli.main import main
from nas.core.run_dir import RunDir
from nas.search.records import read_trials_csv

pytestmark = [pytest.mark.long, pytest.mark.timeout(900)]


@pytest.mark.parametrize("space", ["efficientnet", "nasnet"])
def test_nas_run_end_to_end(space: str, tmp_path: Path, tiny_config) -> None:
    from nas.core.config import load_data, make_space
    from search_spaces import Architecture

    cfg = tiny_config(tmp_path / "tiny.yaml", space={"name": space, "layout": "small"}, ranking={"quick_check": False})
    root = tmp_path / "run"
    assert main(["run", "--config", str(cfg), "--out", str(root)]) == 0
    run = RunDir(root)
    records = [r for r in read_trials_csv(run.trials_csv) if r.status == "COMPLETE"]
    assert len(records) == 3
    loaded = run.load_config()
    searched = make_space(loaded, load_data(loaded))
    for record in records:  # every candidate is an architecture of the space (compound constraint included)
        searched.validate(Architecture(space, record.arch))
    info = json.loads((root / "run.json").read_text())
    assert info["export"]["check"]["passed"] is True
    winner = next(r for r in records if r.trial == info["export"]["trial"])
    model = onnx.load(info["export"]["onnx"])
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    expected = searched.input_shape(1, Architecture(space, winner.arch))
    assert dims[1:] == list(expected[1:])  # channels and the winner's own resolution
    assert info["export"]["arch_id"] in (root / "report.md").read_text()
