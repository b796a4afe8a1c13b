"""`nas rank` and `nas finetune` end to end on a tiny searched run: figures, study, resumption, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli.main import main
from nas.core.run_dir import RunDir
from nas.ranking.trials import open_ranking_study

pytestmark = pytest.mark.timeout(1200)  # a searched run first: slow on a shared machine


@pytest.fixture(scope="module")
def searched_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rank") / "run"
    shutil.copytree(trained_run, root)
    assert main(["search", "--run", str(root), "--trials", "5"]) == 0
    return root


def _ranking_trials(run: Path) -> list[optuna.trial.FrozenTrial]:
    study = open_ranking_study(RunDir(run), RunDir(run).load_config().search)
    return study.get_trials(deepcopy=False)


def test_rank_trains_a_spread_and_reports_a_verdict(searched_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--run", str(searched_run), "--archs", "3", "--seeds", "2", "--epochs", "1"]) == 0
    result = json.loads((searched_run / "ranking.json").read_text())
    assert len(result["archs"]) == 3 and result["seeds"] == 2 and result["complete"]
    assert sum(a["winner"] for a in result["archs"]) == 1
    for key in ("kendall_tau", "spearman_rho", "kendall_tau_inherited", "seed_ceiling"):
        assert -1 <= result[key]["value"] <= 1
    assert result["verdict"] in ("trusted", "partly", "not trusted", "unknown")
    trials = _ranking_trials(searched_run)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    report = (searched_run / "report.md").read_text()
    assert "Can this ranking be trusted?" in report and "Verdict:" in report
    assert (searched_run / "ranking_scatter.png").is_file()
    assert "verdict:" in capsys.readouterr().out


def test_rank_resumes_an_interrupted_training_without_redoing_finished_ones(searched_run: Path) -> None:
    study = open_ranking_study(RunDir(searched_run), RunDir(searched_run).load_config().search)
    finished = {t.user_attrs["key"] for t in study.get_trials(deepcopy=False)}
    # a third seed: one of its trainings "was running" when the command died
    stale = study.ask()
    stale.set_user_attr("key", "never-finished")
    assert main(["rank", "--run", str(searched_run), "--archs", "3", "--seeds", "3", "--epochs", "1", "--workers", "2"]) == 0
    trials = _ranking_trials(searched_run)
    states = {t.user_attrs.get("key"): t.state for t in trials}
    assert states["never-finished"] == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 9 and finished <= {t.user_attrs["key"] for t in complete}
    assert len({t.user_attrs["worker"] for t in complete if t.user_attrs["seed"] == 2}) >= 1
    assert json.loads((searched_run / "ranking.json").read_text())["seeds"] == 3


def test_finetune_reports_test_accuracy_with_an_interval_and_exports(searched_run: Path) -> None:
    args = ["finetune", "--run", str(searched_run), "--epochs", "1", "--distill", "0.5", "--mixup", "0.2"]
    assert main(args) == 0
    summary = json.loads((searched_run / "finetune" / "finetune.json").read_text())
    test = summary["test_accuracy"]
    assert test["low"] <= test["accuracy"] <= test["high"] and test["n"] > 0
    assert summary["check"]["passed"] is True and Path(summary["onnx"]).is_file()
    assert summary["teacher"].startswith("largest candidate")
    assert main(args) == 0  # resumed: nothing left to train
    assert json.loads((searched_run / "finetune" / "finetune.json").read_text())["resumed_from_epoch"] == 1
    report = (searched_run / "report.md").read_text()
    assert "Fine-tuned winner" in report and "fine-tuned (test, %)" in report


def test_bad_input_exits_2(searched_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rank", "--run", str(tmp_path)]) == 2
    assert main(["rank", "--run", str(searched_run), "--archs", "1"]) == 2
    assert main(["finetune", "--run", str(searched_run), "--trial", "999"]) == 2
    assert main(["finetune", "--run", str(searched_run), "--distill", "0.5", "--teacher", "nope"]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "at least 2" in err and "not a candidate" in err and "MODULE:CALLABLE" in err


@pytest.mark.long
def test_rank_on_ray_runs_the_trainings_as_ray_tasks(
    searched_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(searched_run, run, ignore=shutil.ignore_patterns(".*.lock", "ray"))
    # 2 epochs: tasks no other test of this module trained (a task is architecture, seed and epochs).
    args = ["rank", "--run", str(run), "--archs", "2", "--seeds", "1", "--epochs", "2", "--workers", "2"]
    assert main([*args, "--engine", "ray"]) == 0
    result = json.loads((run / "ranking.json").read_text())
    assert result["engine"] == "ray" and result["complete"] and len(result["archs"]) == 2
    trained = [t for t in _ranking_trials(run) if t.user_attrs.get("key", "").endswith("-e2")]
    assert len(trained) == 2 and all(t.state == TrialState.COMPLETE for t in trained)
    assert "Ray task(s)" in capsys.readouterr().out
    # Ray's files stay in the run directory.
    assert (run / "ray" / "tmp").is_dir()


def test_rank_refuses_an_address_without_engine_ray(searched_run: Path) -> None:
    from nas.core.errors import UsageError
    from nas.ranking import rank_run

    with pytest.raises(UsageError, match="goes with engine ray"):
        rank_run(RunDir(searched_run), engine="optuna", address="127.0.0.1:6379")
