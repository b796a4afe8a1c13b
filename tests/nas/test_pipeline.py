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


def _winner_trial(markdown: str) -> int:
    import re

    match = re.search(r"^## Winner: trial (\d+)$", markdown, flags=re.MULTILINE)
    assert match, markdown[:500]
    return int(match.group(1))


def test_report_and_export_pick_the_same_candidate_and_every_section_describes_it(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nas.report.selection import select_best

    run = finished_run / "run"
    records = [r for r in read_trials_csv(run / "trials.csv") if r.status == "COMPLETE"]
    latencies = sorted(r.latency_ms for r in records)
    budget = latencies[0] * 1.0001  # only the fastest candidate fits: a winner other than the most accurate, likely
    chosen = select_best(records, {"latency_ms": budget})
    assert chosen is not None
    assert main(["report", "--run", str(run), "--max-latency-ms", f"{budget:.9g}"]) == 0
    markdown = (run / "report.md").read_text()
    assert _winner_trial(markdown) == chosen.trial
    export_part = markdown[markdown.index("## ONNX export"):]
    assert f"candidate: trial {chosen.trial} (arch {chosen.arch_id})" in export_part
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--best", "--max-latency-ms", f"{budget:.9g}"]) == 0
    out = capsys.readouterr().out
    assert f"(trial {chosen.trial}, arch {chosen.arch_id})" in out and len(out) < 1000  # no JSON dump


def test_export_bundle_carries_preprocessing_and_architecture(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nas.export.bundle import read_onnx_metadata

    run = finished_run / "run"
    info = json.loads((run / "run.json").read_text())
    onnx_path = Path(info["export"]["onnx"])
    meta = read_onnx_metadata(onnx_path)
    assert meta["preprocess.input_size"] == 16 and len(meta["preprocess.mean"]) == 1
    assert meta["preprocess.class_names"] == [str(i) for i in range(10)]
    assert meta["space"] == "shufflenet" and meta["layout"] == "small"
    assert meta["architecture"]["arch_id"] == info["export"]["arch_id"]
    record = json.loads(onnx_path.with_name(onnx_path.stem + ".export.json").read_text())
    assert record["preprocessing"]["std"] == meta["preprocess.std"] and record["check"]["passed"] is True
    arch = json.loads(onnx_path.with_suffix(".arch.json").read_text())
    assert arch["space"] == "shufflenet" and arch["layout"] == "small" and arch["space_config"]["input_size"] == 16
    capsys.readouterr()
    assert main(["profile", "--arch", str(onnx_path.with_suffix(".arch.json")), "--repeats", "3"]) == 0
    assert info["export"]["arch_id"] in capsys.readouterr().out


def test_an_export_killed_half_way_leaves_nothing_that_looks_checked(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nas.export.check as check_module
    from nas.core.run_dir import RunDir
    from nas.export.winner import export_run

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C during the ONNX Runtime check

    monkeypatch.setattr(check_module, "verify_onnx", killed)
    out = tmp_path / "bundle" / "model.onnx"
    with pytest.raises(KeyboardInterrupt):
        export_run(RunDir(finished_run / "run"), out=out)
    assert list((tmp_path / "bundle").iterdir()) == []


def test_an_earlier_export_is_reused_only_for_the_same_supernet(finished_run: Path) -> None:
    from nas.core.run_dir import RunDir
    from nas.export.winner import find_export, pick_candidate

    run = RunDir(finished_run / "run")
    info = run.read_info()
    record = next(r for r in read_trials_csv(run.trials_csv) if r.trial == info["export"]["trial"])
    assert find_export(run, record) is not None
    bundle = Path(info["export"]["bundle_json"])
    saved = bundle.read_text()
    try:
        bundle.write_text(saved.replace(info["export"]["supernet_sha256"], "0" * 16))
        assert find_export(run, record) is None
    finally:
        bundle.write_text(saved)
    assert pick_candidate(read_trials_csv(run.trials_csv), record.trial, {}).trial == record.trial


def test_reference_run_starts_from_scratch(tmp_path: Path) -> None:
    from nas.core.run_dir import RunDir

    run = RunDir(tmp_path / "results" / "default")
    (run.root / "export").mkdir(parents=True)
    for name in ("run.json", "trials.csv", "report.md", "pareto_mult_adds.png", "export/trial9.onnx", "notes.txt"):
        (run.root / name).write_text("{}")
    removed = {p.name for p in run.clear_generated()}
    assert removed == {"run.json", "trials.csv", "report.md", "pareto_mult_adds.png", "export"}
    assert [p.name for p in run.root.iterdir()] == ["notes.txt"]  # nothing but what runs write is touched


@pytest.mark.slow
def test_a_fresh_clones_run_leaves_git_status_clean(tmp_path: Path, tiny_config) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    config = tiny_config(tmp_path / "tiny.yaml")
    result = subprocess.run([sys.executable, "-m", "nas", "run", "--config", str(config)], cwd=clone,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (clone / "runs" / "tiny" / "report.html").is_file()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == ""
