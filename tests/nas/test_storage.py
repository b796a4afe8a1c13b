"""The run's storage: URLs and passwords, a missing driver, a torn journal, a changed storage, optuna-dashboard names."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import optuna
import pytest

from nas.core.errors import UsageError
from nas.core.run_dir import RunDir
from nas.core.sections import SearchConfig
from nas.search.storage import make_storage, masked_url, repair_journal, scrub
from nas.search.study import open_study, take_worker_ticket


def test_passwords_are_masked_in_urls_and_messages() -> None:
    url = "postgresql://alice:s3cr%40t@db.example:5432/nas"
    assert masked_url(url) == "postgresql://alice:***@db.example:5432/nas"
    assert masked_url("sqlite:///x.db") == "sqlite:///x.db"
    assert masked_url("postgresql://alice@db/nas") == "postgresql://alice@db/nas"
    text = scrub(f"could not connect to {url} with password s3cr@t", url)
    assert "s3cr" not in text and "***" in text


def test_a_missing_driver_is_named_with_the_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    search = SearchConfig(storage="postgresql://alice:hunter2@127.0.0.1:1/nas")
    with pytest.raises(UsageError) as err:
        make_storage(RunDir(tmp_path), search)
    message = str(err.value)
    assert "'psycopg'" in message and "nas-efficiency[postgres]" in message
    assert "hunter2" not in message and "alice:***@" in message


def test_an_unreachable_server_is_an_error_without_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="the driver of the 'postgres' extra: pip install -e '.[dev,postgres]'")
    search = SearchConfig(storage="postgresql://alice:hunter2@127.0.0.1:1/nas")  # nothing listens on port 1
    with pytest.raises(UsageError) as err:
        make_storage(RunDir(tmp_path), search)
    assert "cannot be opened" in str(err.value) and "hunter2" not in str(err.value)


def test_a_torn_last_journal_record_is_cut_off_with_a_backup(tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    good = b'{"op_code": 0, "worker_id": "a"}\n{"op_code": 1, "worker_id": "a"}\n'
    journal.write_bytes(good + b'{"op_code": 5, "wor')  # a crash in the middle of the last write
    backup = repair_journal(journal)
    assert backup is not None and backup.read_bytes().endswith(b'"wor')
    assert journal.read_bytes() == good
    assert repair_journal(journal) is None  # whole now: left alone, no new backup
    journal.write_bytes(good + b"{not json}\n")
    assert repair_journal(journal) is not None and journal.read_bytes() == good


def test_a_search_after_a_torn_journal_goes_on(trained_run: Path, tmp_path: Path) -> None:
    from nas.search.engine import run_search
    from nas.search.records import read_trials_csv

    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock"))
    run = RunDir(root)
    run_search(run, trials=1, progress=False)
    with run.journal.open("ab") as handle:
        handle.write(b'{"op_code": 6, "worker_id": "x", "trial_id": 0, "us')
    summary = run_search(run, trials=2, progress=False)
    assert summary.complete == 2 and not summary.short
    assert len(list(root.glob("study.journal.torn-*"))) == 1
    complete = [r for r in read_trials_csv(run.trials_csv) if r.status == "COMPLETE"]
    assert len({r.arch_id for r in complete}) == 2


def test_changing_the_storage_of_a_run_is_refused_naming_the_old_one(trained_run: Path, tmp_path: Path) -> None:
    from nas.core.config import load_config, merge_config, write_config
    from nas.search.engine import run_search

    root = tmp_path / "run"
    shutil.copytree(trained_run, root, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock"))
    run = RunDir(root)
    run_search(run, trials=1, progress=False)
    assert json.loads(run.info_path.read_text())["search"]["storage"].startswith("the journal file")
    moved = merge_config(load_config(run.config_path), {"search": {"storage": f"sqlite:///{tmp_path / 'other.db'}"}})
    write_config(moved, run.config_path)
    with pytest.raises(UsageError, match=r"this run.s candidates are in the journal file study\.journal"):
        run_search(run, trials=2, progress=False)


def test_studies_name_their_objectives_and_workers_get_distinct_tickets(tmp_path: Path) -> None:
    search = SearchConfig(storage=f"sqlite:///{tmp_path / 's.db'}", objectives=("accuracy", "latency_ms"))
    study = open_study(make_storage(RunDir(tmp_path), search), search)
    assert study.metric_names == ["accuracy", "latency_ms"]  # optuna-dashboard's axis names
    again = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert [take_worker_ticket(study), take_worker_ticket(again), take_worker_ticket(study)] == [0, 1, 2]
