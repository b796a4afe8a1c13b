"""Engine `ray`: a real two-node Ray cluster on this machine, a worker killed mid-search, a driver killed and rerun.

One cluster (a head and a second node, one CPU each, listening on 127.0.0.1) is shared by the module; the
driver tests start their own local cluster in a subprocess (in a new session, so that the test can stop
whatever Ray leaves behind when the driver is killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas.core.run_dir import RunDir
from nas.search.records import read_trials_csv
from nas.search.study import STUDY_NAME, make_storage, open_study

# Ray servers bind to every interface unless this is set before ray is first imported (see nas.search.ray.cluster).
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _copy_run(trained_run: Path, tmp_path: Path) -> RunDir:
    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock", "ray"))
    return RunDir(root)


def _study(run: RunDir) -> optuna.Study:
    cfg = run.load_config()
    return open_study(make_storage(run, cfg.search), cfg.search)


def _complete(run: RunDir) -> list[optuna.trial.FrozenTrial]:
    if not run.journal.exists():
        return []
    return [
        t
        for t in _study(run).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "duplicate_of" not in t.user_attrs
    ]


def _check_records(run: RunDir, count: int) -> list[Any]:
    records = read_trials_csv(run.trials_csv)
    complete = [r for r in records if r.status == "COMPLETE"]
    assert len(complete) == count
    assert len({r.arch_id for r in complete}) == count
    for r in complete:
        assert 0.0 <= r.accuracy <= 1.0
        assert r.params > 0 and r.mult_adds > 0 and r.memory_access_bytes > 0
        assert r.latency_ms > 0 and r.latency_p10_ms <= r.latency_ms <= r.latency_p90_ms
        assert r.energy_mj > 0 and r.energy_source
        assert r.worker and r.started_at and r.finished_at
    return complete


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Ray cluster of two nodes (one CPU each) on this machine, its files in a short temporary folder."""
    added = {k: v for k, v in {**_LOCAL_ENV, "RAY_TMPDIR": ""}.items() if k not in os.environ}
    temp = Path(tempfile.mkdtemp(prefix="nas-ray-test-"))  # short: Ray's socket paths are limited to 107 bytes
    (temp / "ray").mkdir()
    added["RAY_TMPDIR"] = str(temp)
    os.environ.update(added)
    from ray.cluster_utils import Cluster

    started = None
    try:
        started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        started.add_node(num_cpus=1)
        yield started
    finally:
        if started is not None:
            started.shutdown()
        for key in added:
            os.environ.pop(key, None)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_search_on_two_nodes_records_every_metric(cluster: Any, trained_run: Path, tmp_path: Path) -> None:
    import ray

    from nas.search.ray.engine import run_ray_search

    run = _copy_run(trained_run, tmp_path)
    summary = run_ray_search(run, trials=4, workers=2, address=cluster.address, progress=False)
    assert summary.complete == 4 and summary.failed == 0
    assert not ray.is_initialized()  # disconnected; the cluster itself is the fixture's
    _check_records(run, 4)
    # The storage is readable by plain Optuna, metrics and constraints included, as with engine optuna.
    study = optuna.load_study(study_name=STUDY_NAME, storage=make_storage(run, run.load_config().search))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4 and all("latency_ms" in t.user_attrs and len(t.values) == 2 for t in done)
    # Two trials ran at once on two nodes of one CPU each: both nodes evaluated candidates.
    assert len({t.user_attrs["ray_node"] for t in done}) == 2
    assert all(t.user_attrs["worker"].rsplit(":", 1)[1].isdigit() for t in done)
    assert run.read_info()["search"]["engine"] == "ray"
    assert any((run.root / "ray" / "tune").iterdir())  # Tune's results are in the run directory


def _raylet_pids(cluster: Any) -> set[int]:
    return {node.all_processes["raylet"][0].process.pid for node in [cluster.head_node, *cluster.worker_nodes]}


def _kill_a_running_trial(raylets: set[int]) -> int | None:
    """SIGKILL a Ray worker of these raylets that is running a trial's step (its title says so); its pid."""
    for raylet in raylets:
        try:
            children = [
                int(c) for t in Path(f"/proc/{raylet}/task").iterdir() for c in (t / "children").read_text().split()
            ]
        except OSError:
            continue
        for pid in children:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and title.endswith(".train"):
                os.kill(pid, signal.SIGKILL)
                return pid
    return None


@pytest.mark.faults
def test_a_worker_killed_mid_search_is_retried_and_loses_nothing(
    cluster: Any, trained_run: Path, tmp_path: Path
) -> None:
    from nas.search.ray.engine import run_ray_search

    run = _copy_run(trained_run, tmp_path)
    raylets = _raylet_pids(cluster)
    killed: list[int] = []
    stop = threading.Event()

    def kill_one_worker() -> None:
        # Once the first candidate is complete (the search is under way), SIGKILL a worker running a trial.
        while not stop.is_set() and not _complete(run):
            time.sleep(0.2)
        while not stop.is_set():
            pid = _kill_a_running_trial(raylets)
            if pid is not None:
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    try:
        summary = run_ray_search(run, trials=5, workers=2, address=cluster.address, progress=False)
    finally:
        stop.set()
        killer.join(timeout=10)
    assert killed, "no worker was running a trial after the first candidate"
    assert summary.complete == 5
    _check_records(run, 5)
    # The trial of the killed worker (mid-step: its title said so) was retried on a new actor and completed.
    retried = [t for t in _study(run).get_trials(deepcopy=False) if t.user_attrs.get("ray_retries", 0) >= 1]
    assert retried and all(t.state == TrialState.COMPLETE for t in retried)
    assert summary.failed == 0


_DRIVER = """
import json, sys
from pathlib import Path
from nas.search.ray.engine import run_ray_search
from nas.core.run_dir import RunDir
summary = run_ray_search(RunDir(Path(sys.argv[1])), trials=int(sys.argv[2]), workers=1, progress=False)
print("SUMMARY " + json.dumps(summary.__dict__))
"""


def _driver(run: RunDir, trials: int, home: Path) -> subprocess.Popen[str]:
    # A new session: the test can stop every process of the driver's local Ray cluster with one killpg.
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    for key in (*_LOCAL_ENV, "RAY_TMPDIR"):
        env.pop(key, None)  # the engine sets what it needs itself
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(run.root), str(trials)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip


def _stop_session(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
    with contextlib.suppress(
        ProcessLookupError
    ):  # what the driver's Ray left behind (its agents outlive a killed driver)
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.faults
def test_a_killed_driver_is_resumed_by_the_same_command(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    first = _driver(run, 3, home)
    try:
        deadline = time.time() + 240
        while len(_complete(run)) < 1:
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.time() < deadline, "no candidate finished in 240 s"
            time.sleep(0.3)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        _stop_session(first)
    before = {t.number: t.datetime_complete for t in _complete(run)}
    assert 1 <= len(before) < 3
    second = _driver(run, 3, home)
    try:
        out, _ = second.communicate(timeout=300)
    finally:
        _stop_session(second)
    assert second.returncode == 0, out
    summary = json.loads(out.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["complete"] == 3
    complete = _check_records(run, 3)
    assert {t.number: t.datetime_complete for t in _complete(run) if t.number in before} == before  # not redone
    assert {r.trial for r in complete} >= set(before)
    # A candidate the killed driver left running was failed and its architecture evaluated again. A trial asked
    # but not yet given an architecture when the driver died is failed with nothing to retry.
    trials = _study(run).get_trials(deepcopy=False)
    for t in trials:
        if t.state == TrialState.FAIL and "interrupted" in t.user_attrs.get("error", "") and "arch_id" in t.user_attrs:
            retry = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
            assert retry and retry[0].state == TrialState.COMPLETE
            assert retry[0].user_attrs["arch_id"] == t.user_attrs["arch_id"]
    # A local cluster: on loopback only, Ray's files in the run directory, nothing in the home directory.
    assert "a local Ray cluster on 127.0.0.1" in out and "not only on 127.0.0.1" not in out
    assert any(p.name.startswith("session_") for p in (run.root / "ray" / "tmp").iterdir())
    # No ~/.ray (token, sessions), no ~/ray_results. (~/.cache/Microsoft is ONNX Runtime's device id, written when
    # onnxruntime is imported: the search times candidates on it.)
    assert not [p.name for p in home.iterdir() if p.name != ".cache"]
    assert not [p for p in (home / ".cache").rglob("*") if "Microsoft" not in p.parts] if (home / ".cache").exists() else True


def test_an_address_nobody_listens_at_is_refused_at_once(trained_run: Path, tmp_path: Path) -> None:
    from nas.core.errors import UsageError
    from nas.search.ray.engine import run_ray_search

    run = _copy_run(trained_run, tmp_path)
    start = time.perf_counter()
    with pytest.raises(UsageError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        run_ray_search(run, trials=1, address="127.0.0.1:1", progress=False)
    assert time.perf_counter() - start < 60  # ray.init alone would retry for minutes
    with pytest.raises(UsageError, match="Ray Client address"):
        run_ray_search(run, trials=1, address="ray://127.0.0.1:10001", progress=False)
    assert not _complete(run)


def test_a_deep_run_directory_gets_a_short_link_for_ray(tmp_path: Path) -> None:
    from nas.search.ray.cluster import _short_temp_dir

    deep = tmp_path / ("d" * 60) / "ray" / "tmp"
    said: list[str] = []
    with _short_temp_dir(deep, said.append) as used:
        assert used != deep and used.is_symlink() and used.resolve() == deep.resolve()
        assert len(str(used)) < 45
        assert said and str(used) in said[0]
    assert not used.exists() and deep.is_dir()
    short = Path(tempfile.mkdtemp(prefix="n-"))
    try:
        with _short_temp_dir(short, said.append) as used:
            assert used == short
    finally:
        shutil.rmtree(short)


def test_the_environment_is_restored_after_the_search() -> None:
    from nas.search.ray.cluster import _environment

    key = "RAY_USAGE_STATS_ENABLED"
    saved = os.environ.pop(key, None)
    try:
        with _environment({key: "0"}):
            assert os.environ[key] == "0"
        assert key not in os.environ
        os.environ[key] = "1"
        with _environment({key: "0"}):
            assert os.environ[key] == "1"  # the user's setting wins
    finally:
        os.environ.pop(key, None)
        if saved is not None:
            os.environ[key] = saved


def test_the_cluster_head_passes_the_address_check(cluster: Any) -> None:
    from nas.search.ray.cluster import _check_reachable

    _check_reachable(cluster.address)  # a real GCS answers gRPC's HTTP/2 preface


@contextlib.contextmanager
def _listener(reply: bytes | None) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that is not Ray: it answers ``reply`` to anything, or stays silent."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if reply is not None:
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                    conn.sendall(reply)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", None], ids=["http", "silent"])
def test_an_address_where_something_else_answers_exits_2_within_10_s(
    trained_run: Path, tmp_path: Path, reply: bytes | None
) -> None:
    from nas.cli.main import main

    run = _copy_run(trained_run, tmp_path)
    with _listener(reply) as port:
        start = time.perf_counter()
        code = main(["search", "--run", str(run.root), "--engine", "ray", "--address", f"127.0.0.1:{port}"])
        assert code == 2 and time.perf_counter() - start < 10
    assert not _complete(run)


@pytest.mark.long
def test_a_relative_run_directory_works(trained_run: Path, tmp_path: Path) -> None:
    run = _copy_run(trained_run, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path.cwd())}
    for key in (*_LOCAL_ENV, "RAY_TMPDIR"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas", "search", "--run", "run", "--engine", "ray", "--trials", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        _stop_session(proc)
    assert proc.returncode == 0, out
    _check_records(run, 1)
    assert (run.root / "ray" / "tune").is_dir()


def test_the_report_shows_the_ray_address_the_search_used(trained_run: Path, tmp_path: Path) -> None:
    from nas.pipeline import _shown_config

    run = _copy_run(trained_run, tmp_path)
    run.update_info(search={"engine": "ray", "ray_address": "10.0.0.1:6379"})
    shown = _shown_config(run.load_config(), run.read_info())
    assert shown["search"]["ray_address"] == "10.0.0.1:6379"
