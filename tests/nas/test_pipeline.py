"""`nas run` end to end on a tiny config, its resumption, and `nas report` / `nas export` on the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from nas.cli.main import main
from nas.search.records import read_trials_csv


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    cfg = tiny_config(root / "tiny.yaml", report={"budgets": {"latency_ms": 50.0}})
    assert main(["run", "--config", str(cfg), "--out", str(root / "run")]) == 0
    return root


def test_run_writes_report_onnx_and_records(finished_run: Path) -> None:
    run = finished_run / "run"
    for name in ("config.yaml", "run.json", "trials.csv", "report.md", "report.html", "supernet/supernet.pt"):
        assert (run / name).is_file(), name
    records = [r for r in read_trials_csv(run / "trials.csv") if r.status == "COMPLETE"]
    assert len(records) == 3
    info = json.loads((run / "run.json").read_text())
    exported = Path(info["export"]["onnx"])
    onnx.checker.check_model(onnx.load(str(exported)))
    assert info["export"]["check"]["passed"] is True
    assert info["export"]["val_accuracy_now"] == pytest.approx(info["export"]["val_accuracy_search"])
    assert exported.with_suffix(".arch.json").is_file() and exported.with_suffix(".state_dict.pt").is_file()
    report = (run / "report.md").read_text()
    assert "latency" in report.lower() and info["export"]["arch_id"] in report
    quick = json.loads((run / "ranking.json").read_text())  # the quick ranking check that ends `nas run`
    assert quick["seeds"] == 1 and len(quick["archs"]) == 3 and "Can this ranking be trusted?" in report


def test_rerun_resumes_instead_of_starting_over(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run / "run"
    before = {r.trial: r.finished_at for r in read_trials_csv(run / "trials.csv")}
    checkpoint = (run / "supernet" / "supernet.pt").stat().st_mtime_ns
    assert main(["run", "--config", str(finished_run / "tiny.yaml"), "--out", str(run)]) == 0
    assert {r.trial: r.finished_at for r in read_trials_csv(run / "trials.csv")} == before
    assert (run / "supernet" / "supernet.pt").stat().st_mtime_ns == checkpoint


def test_report_with_budgets_and_one_nobody_meets(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run / "run"
    assert main(["report", "--run", str(run), "--max-latency-ms", "1000", "--max-memory-access-mb", "0.000001"]) == 0
    text = (run / "report.md").read_text()
    assert "no candidate" in text.lower()


def test_export_a_chosen_trial_and_bad_trials(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = finished_run / "run"
    trial = read_trials_csv(run / "trials.csv")[0].trial
    out = tmp_path / "chosen.onnx"
    assert main(["export", "--run", str(run), "--trial", str(trial), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".arch.json").is_file()
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--trial", "999"]) == 2
    assert "not a candidate of this run" in capsys.readouterr().err


def test_run_refuses_another_config_in_the_same_directory(finished_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.yaml"
    shutil.copy(finished_run / "tiny.yaml", other)
    other.write_text(other.read_text().replace("epochs: 1", "epochs: 2"))
    assert main(["run", "--config", str(other), "--out", str(finished_run / "run")]) == 2
    assert "supernet.epochs" in capsys.readouterr().err
