"""Engine optuna on a real PostgreSQL server: liveness by heartbeat, and two machines on one study.

The server comes from ``NAS_TEST_POSTGRES_URL`` (``.ci/postgres``); each test gets a fresh database.
"""

from __future__ import annotations

import collections
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
from nas.core.sections import SearchConfig
from nas.search.recovery import retry_stale_trials
from nas.search.storage import TrialHeartbeat, make_storage
from nas.search.study import open_study


def _search_config(url: str, **extra: object) -> SearchConfig:
    return SearchConfig(storage=url, heartbeat_interval=1, heartbeat_grace=3, **extra)  # type: ignore[arg-type]


def test_only_trials_whose_heartbeat_stopped_are_failed_and_retried(postgres_url: str, tmp_path: Path) -> None:
    search = _search_config(postgres_url)
    study = open_study(make_storage(RunDir(tmp_path), search), search)
    storage = study._storage
    dead, live = study.ask(), study.ask()
    for trial, arch_id in ((dead, "aaa"), (live, "bbb")):
        trial.suggest_categorical("layer_0", ["a", "b"])
        trial.set_user_attr("arch_id", arch_id)
    TrialHeartbeat(storage, dead._trial_id).beat_once()  # then its worker "dies": no more beats
    with TrialHeartbeat(storage, live._trial_id):
        time.sleep(search.heartbeat_grace + 2)
        assert retry_stale_trials(study) == 1
        assert storage.get_trial(live._trial_id).state == TrialState.RUNNING  # alive: never failed
    assert storage.get_trial(dead._trial_id).state == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == dead.number
    assert retry_stale_trials(study) == 0  # re-enqueued once only


def _copy_run(trained_run: Path, root: Path, url: str) -> RunDir:
    from nas.core.config import load_config, merge_config, write_config

    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock", "run.json"))
    run = RunDir(root)
    cfg = merge_config(
        load_config(run.config_path),
        {"search": {"storage": url, "heartbeat_interval": 1, "heartbeat_grace": 4, "sampler": "random"}},
    )
    write_config(cfg, run.config_path)
    return run


def _nas(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas", *args]


def _complete_by(study: optuna.Study, worker_pid: int) -> int:
    return sum(
        t.user_attrs.get("worker", "").endswith(f":{worker_pid}") for t in study.get_trials(states=(TrialState.COMPLETE,))
    )


def _claimed_by(study: optuna.Study, worker_pid: int) -> int:
    return sum(t.user_attrs.get("worker", "").endswith(f":{worker_pid}") for t in study.get_trials())


def _wait(
    what: str, condition: object, procs: list[subprocess.Popen[bytes]], timeout: float = 300, poll: float = 0.5
) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in procs:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if condition():  # type: ignore[operator]
            return
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.mark.faults
def test_two_machines_on_one_study_one_killed_mid_search(postgres_url: str, trained_run: Path, tmp_path: Path) -> None:
    """Two `nas search` in two run directories on one study; SIGKILL of one; the other finishes the count.

    The count is large enough that ``a`` cannot finish it alone while ``b`` starts (a candidate takes ~2 s,
    ``b``'s start-up up to ~20 s on a busy machine): CI once saw ``a`` done with 7 before ``b`` ran one.
    """
    target = 16
    run_a = _copy_run(trained_run, tmp_path / "a", postgres_url)
    run_b = _copy_run(trained_run, tmp_path / "b", postgres_url)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    a = subprocess.Popen(_nas("search", "--run", str(run_a.root), "--trials", str(target)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    b: subprocess.Popen[bytes] | None = None
    try:
        _wait("the study exists", lambda: _load(postgres_url) is not None, [a])
        study = _load(postgres_url)
        assert study is not None
        _wait("a finishes a candidate", lambda: _complete_by(study, a.pid) >= 1, [a])
        b = subprocess.Popen(_nas("search", "--run", str(run_b.root), "--trials", str(target)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        _wait("b claims a candidate", lambda: _claimed_by(study, b.pid) >= 1, [a, b], poll=0.1)
        # Kill a while it evaluates a candidate, so that a claimed trial is left running.
        _wait("a runs a trial", lambda: any(t.user_attrs.get("worker", "").endswith(f":{a.pid}")
                                            for t in study.get_trials(states=(TrialState.RUNNING,))), [a, b], poll=0.1)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        out, err = b.communicate(timeout=600)
        assert b.returncode == 0, err.decode()
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(complete) == target  # exactly: not short, not overshot
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["worker"].endswith(f":{a.pid}") for t in failed)  # no live trial failed
    retried = {t.user_attrs.get("retry_of") for t in trials}
    assert all(t.number in retried for t in failed if "arch_id" in t.user_attrs)  # the dead machine's, retried
    evaluated = collections.Counter(t.user_attrs["arch_id"] for t in complete)
    assert max(evaluated.values()) == 1  # no architecture evaluated twice
    for t in trials:  # and no architecture ever claimed twice by live workers
        if "arch_id" in t.user_attrs and "duplicate_of" not in t.user_attrs and t.state != TrialState.FAIL:
            assert sum(o.user_attrs.get("arch_id") == t.user_attrs["arch_id"] and o.state != TrialState.FAIL
                       and "duplicate_of" not in o.user_attrs for o in trials) == 1
    # Seeds differ per worker: a's and b's samplers did not replay each other's proposals.
    assert {t.user_attrs["worker"].split(":")[-1] for t in complete} == {str(a.pid), str(b.pid)}
    # b's records mirror the whole study; the password is nowhere in b's run directory files.
    from sqlalchemy.engine import make_url

    password = str(make_url(postgres_url).password)
    for name in ("run.json", "trials.csv"):
        assert password not in (run_b.root / name).read_text()
    assert password not in out.decode() + err.decode()


def _load(url: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name="search", storage=url)
    except KeyError:
        return None
