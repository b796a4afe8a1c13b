"""Engine `optuna`: distinct candidates, records in the storage and trials.csv, resume, dead workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.core.run_dir import RunDir
from nas.search.engine import run_search
from nas.search.records import read_trials_csv
from nas.search.study import STUDY_NAME, make_storage, open_study, records_from_study


def _copy_run(trained_run: Path, tmp_path: Path) -> RunDir:
    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock"))
    return RunDir(root)


def _study(run: RunDir) -> optuna.Study:
    cfg = run.load_config()
    return open_study(make_storage(run, cfg.search), cfg.search)


def test_search_finishes_distinct_candidates_with_every_metric(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    summary = run_search(run, trials=3, progress=False)
    assert summary.complete == 3
    records = read_trials_csv(run.trials_csv)
    complete = [r for r in records if r.status == "COMPLETE"]
    assert len(complete) == 3
    assert len({r.arch_id for r in complete}) == 3
    for r in complete:
        assert 0.0 <= r.accuracy <= 1.0
        assert r.params > 0 and r.mult_adds > 0 and r.memory_access_bytes > 0
        assert r.latency_ms > 0 and r.latency_p10_ms <= r.latency_ms <= r.latency_p90_ms
        assert r.energy_mj > 0 and r.energy_source
        assert r.worker and r.started_at and r.finished_at
    # The storage is readable by plain Optuna, metrics included.
    study = optuna.load_study(study_name=STUDY_NAME, storage=make_storage(run, run.load_config().search))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3 and all("latency_ms" in t.user_attrs and len(t.values) == 2 for t in done)


def test_search_resumes_without_redoing_a_candidate(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    run_search(run, trials=2, progress=False)
    first = {r.trial: r.finished_at for r in read_trials_csv(run.trials_csv)}
    summary = run_search(run, trials=4, progress=False)
    assert summary.complete == 4
    records = read_trials_csv(run.trials_csv)
    assert {r.trial: r.finished_at for r in records if r.trial in first} == first  # kept as they were
    complete = [r for r in records if r.status == "COMPLETE"]
    assert len(complete) == 4 and len({r.arch_id for r in complete}) == 4
    # Asking for what is already there does nothing.
    again = run_search(run, trials=4, progress=False)
    assert again.complete == 4 and len(read_trials_csv(run.trials_csv)) == len(records)


def test_a_trial_left_running_is_failed_and_retried(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    cfg = run.load_config()
    study = _study(run)
    space_cls_arch = __import__("nas.core.config", fromlist=["make_space"]).make_space(cfg, cfg.data.load())
    trial = study.ask()
    arch = space_cls_arch.suggest(trial)
    trial.set_user_attr("arch_id", arch.arch_id)
    trial.set_user_attr("arch", dict(arch.values))
    trial.set_user_attr("worker", "elsewhere:1")  # as if its worker was killed mid-evaluation
    summary = run_search(run, trials=2, progress=False)
    assert summary.recovered == 1 and summary.complete == 2
    trials = _study(run).get_trials()
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert retried and retried[0].state == TrialState.COMPLETE
    assert retried[0].user_attrs["arch_id"] == arch.arch_id


def test_duplicate_proposals_are_not_evaluated_twice(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    study = _study(run)
    # Enqueue the same parameters three times: only the first is evaluated.
    cfg = run.load_config()
    from nas.core.config import make_space

    space = make_space(cfg, cfg.data.load())
    arch = space.sample(0)
    for _ in range(3):
        study.enqueue_trial(dict(arch.values))
    run_search(run, trials=2, progress=False)
    trials = _study(run).get_trials()
    evaluated = [t for t in trials if t.user_attrs.get("arch_id") == arch.arch_id and "duplicate_of" not in t.user_attrs]
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(evaluated) == 1 and len(duplicates) == 2
    assert all(t.state == TrialState.PRUNED for t in duplicates)
    assert len({r.arch_id for r in records_from_study(_study(run))}) == 2


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _nas(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas", *args]


def _wait_for_complete(run: RunDir, count: int, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if run.journal.exists():
            done = _study(run).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if len(done) >= count:
                return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} trials completed in {timeout} s")


@pytest.mark.faults
def test_kill_9_of_a_worker_loses_nothing(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    proc = subprocess.Popen(_nas("search", "--run", str(run.root), "--workers", "2", "--trials", "5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for_complete(run, 1, proc)
        workers = _children(proc.pid)
        # spawn starts a resource tracker too: kill a process that holds a RUNNING trial if there is one.
        running = {t.user_attrs.get("worker", "").split(":")[-1] for t in _study(run).get_trials(states=(TrialState.RUNNING,))}
        victims = [p for p in workers if str(p) in running] or workers
        os.kill(victims[0], signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    records = read_trials_csv(run.trials_csv)
    complete = [r for r in records if r.status == "COMPLETE"]
    assert len(complete) == 5 and len({r.arch_id for r in complete}) == 5


@pytest.mark.faults
def test_ctrl_c_then_rerun_finishes_the_count(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    # A shell without job control starts background commands with SIGINT ignored, and an ignored signal stays
    # ignored across exec (Python then installs no KeyboardInterrupt handler): give the child the default
    # disposition, as a terminal's Ctrl-C finds it, whatever started the test run.
    proc = subprocess.Popen(_nas("search", "--run", str(run.root), "--trials", "12"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_complete(run, 1, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {r.trial: r.finished_at for r in read_trials_csv(run.trials_csv) if r.status == "COMPLETE"}
    assert 1 <= len(before) < 12
    result = subprocess.run(_nas("search", "--run", str(run.root), "--trials", "12"), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    records = read_trials_csv(run.trials_csv)
    complete = [r for r in records if r.status == "COMPLETE"]
    assert len(complete) == 12 and len({r.arch_id for r in complete}) == 12
    assert {r.trial: r.finished_at for r in complete if r.trial in before} == before


def test_search_bad_input_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(_nas("search", "--run", str(tmp_path / "nope")), capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a run directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run(_nas("search", "--run", str(tmp_path), "--workers", "0"), capture_output=True, text=True)
    assert result.returncode == 2 and "must be a positive integer" in result.stderr


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_other_samplers_and_a_budget_constraint(trained_run: Path, tmp_path: Path, sampler: str) -> None:
    run = _copy_run(trained_run, tmp_path)
    from nas.core.config import load_config, merge_config, write_config

    cfg = merge_config(load_config(run.config_path), {"search": {"sampler": sampler, "objectives": ["accuracy"], "budgets": {"latency_ms": 1e-6}, "latency_table": False}})
    write_config(cfg, run.config_path)
    run_search(run, trials=2, progress=False)
    study = _study(run)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 2
    # An impossible budget: every candidate is infeasible, and says by how much.
    for t in done:
        assert t.user_attrs["feasible"] is False and t.user_attrs["violations"]["latency_ms"] > 0
        assert t.constraints["latency_ms"] > 0  # reached Optuna as a constraint
