"""The run's Optuna storage: a journal file in the run directory, or an RDB shared by many machines.

Decisions:
- **URLs as written work.** ``postgresql://user@host/db`` is what the README documents; SQLAlchemy 2.1 maps the
  bare ``postgresql`` scheme to psycopg 3, which is this project's ``postgres`` extra
  (``pip install 'nas-efficiency[postgres]'``). A missing driver is an error naming the module and that command.
- **Passwords never leave the URL.** Every message, run.json entry and report shows :func:`masked_url`
  (``postgresql://user:***@host/db``); errors raised by the driver are scrubbed of the password too. Keep the
  password out of config.yaml as well: libpq reads ``PGPASSWORD`` and ``~/.pgpass`` when the URL has none.
- **Liveness by heartbeat.** An RDB storage is opened with Optuna's heartbeat (``heartbeat_interval``,
  ``grace_period``): a worker records a heartbeat for its running trial (:class:`TrialHeartbeat`) and only a
  trial whose heartbeat stopped for the grace period is failed (``fail_stale_trials``), whichever machine runs
  it. The journal file is for one machine: there the run's search lock says nobody else is running.
- **A torn journal is repaired.** A crash in the middle of a write leaves a last line without its newline,
  after which Optuna refuses the whole file (and an append would glue a new record onto the broken one): the
  file is copied to ``study.journal.torn-<time>`` and the broken tail cut off before the search appends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import threading
import warnings
from typing import TYPE_CHECKING

import optuna

from nas.core.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from nas.core.run_dir import RunDir
    from nas.core.sections import SearchConfig

__all__ = [
    "JOURNAL_LABEL",
    "TrialHeartbeat",
    "heartbeat_enabled",
    "make_storage",
    "masked_url",
    "repair_journal",
    "scrub",
    "storage_label",
]

# The driver module each SQLAlchemy dialect loads by default (SQLAlchemy 2.1), and the pip requirement giving it.
_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'nas-efficiency[postgres]' (psycopg[binary])"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
}


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (unchanged when it has none or is not a URL)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy can parse: show nothing after the scheme that could be secret
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
    return parsed.render_as_string(hide_password=True) if parsed.password else url


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` (and the URL itself) replaced by their masked forms."""
    if not url:
        return text
    from sqlalchemy.engine import make_url

    text = text.replace(url, masked_url(url))
    with contextlib.suppress(Exception):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return text


JOURNAL_LABEL = "the journal file study.journal in the run directory"


def storage_label(search: SearchConfig) -> str:
    """What the run's storage is, safe to print and record in run.json: the journal, or the masked URL."""
    return JOURNAL_LABEL if search.storage is None else masked_url(search.storage)


def make_storage(run: RunDir, search: SearchConfig) -> optuna.storages.BaseStorage:
    """The run's Optuna storage: a journal file in the run directory unless an RDB URL is configured."""
    if search.storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        run.root.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(run.journal)))
    return _rdb_storage(search.storage, search.heartbeat_interval, search.heartbeat_grace)


def _rdb_storage(url: str, heartbeat_interval: int, grace: int) -> optuna.storages.RDBStorage:
    from sqlalchemy.engine import make_url

    shown = masked_url(url)
    try:
        backend = make_url(url).get_backend_name()
    except Exception:
        raise UsageError(
            f"search.storage {shown!r} is not a database URL; allowed: none (a journal file in the run directory), "
            "sqlite:///FILE.db, postgresql://USER@HOST/DB or any SQLAlchemy URL"
        ) from None
    try:
        make_url(url).get_dialect().import_dbapi()  # the driver module, so that a missing one can be named
    except ImportError as err:
        module, how = _DRIVERS.get(backend, (err.name or "?", f"pip install {err.name}"))
        raise UsageError(
            f"search.storage {shown!r} needs the Python module {err.name or module!r} ({backend} driver), which is "
            f"not installed: {how}"
        ) from None
    except Exception:
        pass  # an unknown dialect: RDBStorage says so below
    try:
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                # pool_pre_ping: a connection the server closed (restart, idle timeout) is replaced, not an error.
                engine_kwargs={"pool_pre_ping": True} if backend != "sqlite" else None,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace,
            )
    except Exception as err:  # sqlalchemy raises many types for a bad URL or an unreachable server
        reason = scrub(" ".join(str(err).split()), url)[:400]
        raise UsageError(f"search.storage {shown!r} cannot be opened: {reason}") from None


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """True when the storage fails trials by heartbeat (an RDB storage opened by :func:`make_storage`)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


class TrialHeartbeat:
    """Records a heartbeat for one running trial every ``heartbeat_interval`` seconds, from a daemon thread.

    Optuna's own heartbeat thread runs inside ``study.optimize`` only; the engines ask and tell by hand, so
    they hold one of these from the moment a trial is asked until it is told. A process that dies stops
    beating, and after the storage's grace period any other process may fail the trial and retry it.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TrialHeartbeat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def beat_once(self) -> None:
        """Record one heartbeat now (nothing when the storage has no heartbeat)."""
        if heartbeat_enabled(self._storage):
            self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]

    def start(self) -> None:
        if not heartbeat_enabled(self._storage):
            return
        self.beat_once()  # the first beat before returning
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self._trial_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        interval = self._storage.get_heartbeat_interval()  # type: ignore[attr-defined]
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
            except Exception as err:  # a lost connection: try again next beat; the grace period allows several misses
                print(f"heartbeat of trial id {self._trial_id} not recorded: {type(err).__name__}")


def repair_journal(path: Path) -> Path | None:
    """Cut a torn last record off an Optuna journal file; returns the backup's path, or None if it was whole.

    A journal is one JSON record a line; a write interrupted by a crash leaves a last line without its newline
    (or one that is not valid JSON). Everything before it is kept; the original file is copied next to it first.
    """
    import json

    if not path.is_file():
        return None
    data = path.read_bytes()
    if not data:
        return None
    end = len(data)
    if data.endswith(b"\n"):
        start = data.rfind(b"\n", 0, end - 1) + 1
        try:
            json.loads(data[start:end])
            return None
        except ValueError:
            end = start  # a complete line that is not a record: drop it as well
    else:
        end = data.rfind(b"\n") + 1
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.torn-{stamp}")
    shutil.copy2(path, backup)
    with path.open("r+b") as handle:
        handle.truncate(end)
    return backup
