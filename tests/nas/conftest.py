"""A tiny trained run directory shared by the search, report and export tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY_CONFIG = {
    "name": "tiny",
    "data": {"train_limit": 320, "val_limit": 120},
    "supernet": {"epochs": 1, "batch_size": 32, "warmup_epochs": 0.0, "bn_batches": 4, "threads": 1},
    "search": {"trials": 3, "latency_repeats": 5, "population_size": 4, "eval_batch_size": 128},
    "ranking": {"archs": 3, "epochs": 1},
}


def write_tiny_config(path: Path, **sections: dict) -> Path:
    cfg = {key: dict(value) if isinstance(value, dict) else value for key, value in TINY_CONFIG.items()}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with config.yaml and a supernet trained for one epoch (about 10 s)."""
    from nas.core.config import load_config
    from nas.pipeline import prepare_run, train_run

    root = tmp_path_factory.mktemp("run")
    cfg = load_config(write_tiny_config(root / "tiny.yaml"))
    run = prepare_run(cfg, root / "run")
    train_run(run, progress=False)
    return run.root


@pytest.fixture(scope="session")
def tiny_config() -> object:
    """``tiny_config(path, **sections)`` writes the tiny run config with sections updated."""
    return write_tiny_config


POSTGRES_URL_VARIABLE = "NAS_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url() -> object:
    """A fresh, empty PostgreSQL database for one test (its URL), dropped afterwards.

    The server comes from ``NAS_TEST_POSTGRES_URL`` (``.ci/postgres`` starts one on 127.0.0.1 and prints the
    variable; ``.ci/run`` sets it). Without it the test is skipped, saying so.
    """
    import os
    import uuid

    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_VARIABLE} (eval \"$(.ci/postgres)\" starts one on 127.0.0.1)")
    import sqlalchemy

    name = f"nas_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sqlalchemy.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
