"""The study's ask mutex: one asker at a time, across every process and machine that shares the study.

Counting what is finished or running, asking the sampler, checking the proposal against the architectures
already claimed, and claiming it (the trial's ``arch_id`` attribute) happen under this mutex, so the
check-and-claim is a compare-and-set on the storage: no architecture is evaluated twice and the count is not
overshot, however many machines ask.

Where it lives:
- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a dedicated connection. The server
  releases it when the connection ends, so a machine killed while holding it blocks nobody.
- MySQL/MariaDB: ``GET_LOCK`` (released the same way).
- The journal file and SQLite: a file lock next to the storage (``flock``, released when the process dies).
  Both are single-machine storages; put the run directory on one machine.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nas.search.locks import exclusive_lock

__all__ = ["StudyMutex"]


class StudyMutex:
    """A reentrant-free mutex over one study of one storage (see the module docstring)."""

    def __init__(self, storage_url: str | None, study_name: str, local_lock: Path) -> None:
        self._url = storage_url
        self._local_lock = local_lock
        self._key = int.from_bytes(hashlib.sha256(f"nas-ask:{study_name}".encode()).digest()[:8], "big", signed=True)
        self._engine: Any = None
        self._backend = "file"
        if storage_url is not None:
            from sqlalchemy.engine import make_url

            backend = make_url(storage_url).get_backend_name()
            if backend in ("postgresql", "mysql", "mariadb"):
                self._backend = backend

    def _connect(self) -> Any:
        if self._engine is None:
            import sqlalchemy

            assert self._url is not None
            # One connection, kept: the advisory lock belongs to the session that took it.
            self._engine = sqlalchemy.create_engine(self._url, poolclass=sqlalchemy.pool.NullPool)
        return self._engine.connect()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the mutex for the ``with`` block (blocking until it is free)."""
        if self._backend == "file":
            with exclusive_lock(self._local_lock):
                yield
            return
        import sqlalchemy

        with self._connect() as conn:
            if self._backend == "postgresql":
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                release = "SELECT pg_advisory_unlock(:k)"
            else:
                conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": str(self._key)})
                release = "SELECT RELEASE_LOCK(:k)"
            conn.commit()
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a broken connection released the lock already
                    conn.execute(sqlalchemy.text(release), {"k": self._key if self._backend == "postgresql" else str(self._key)})
                    conn.commit()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
