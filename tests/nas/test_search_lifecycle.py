"""Engine optuna's processes: workers die with the `nas search` that started them; a short search exits 1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.core.run_dir import RunDir


def _copy_run(trained_run: Path, tmp_path: Path) -> RunDir:
    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock"))
    return RunDir(root)


def _workers(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (multiprocessing's spawn: '-c from multiprocessing.spawn')."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == parent and b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.faults
def test_workers_die_with_a_killed_parent(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "nas", "search", "--run", str(run.root), "--workers", "2", "--trials", "6"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(workers := _workers(proc.pid)) < 2:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.2)
        # Until a worker evaluates a candidate: past its start-up (a worker whose parent died while it was
        # still importing ends at its first line, when it finds itself orphaned).
        while not run.journal.is_file() or b'"arch_id"' not in run.journal.read_bytes():
            assert proc.poll() is None and time.time() < deadline + 120
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _workers(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_search_that_ends_short_says_so_and_exits_1(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nas.cli.main import main
    from nas.search.candidate import Evaluator

    def broken(self: Evaluator, arch: object) -> dict[str, object]:
        raise RuntimeError("no device")

    monkeypatch.setattr(Evaluator, "evaluate", broken)  # every candidate fails: the proposal cap ends the search
    run = _copy_run(trained_run, tmp_path)
    assert main(["search", "--run", str(run.root), "--trials", "1"]) == 1
    err = capsys.readouterr().err
    assert "ended with 0 of 1 candidates complete" in err
