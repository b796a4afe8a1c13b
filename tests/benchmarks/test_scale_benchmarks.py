"""Scale-out benchmarks on this machine: distributed supernet training and two search processes on one study.

- supernet training throughput with 2 gloo processes (torchrun) against 1, on the default task's supernet
  (digits 16x16, small shufflenet layout, global batch 64, 3 epochs), and the communication volume of one
  step: the bytes DDP all-reduces (counted by a communication hook on a real step), what that means per
  process for a ring all-reduce over N GPUs, and the share of it that belongs to the step's path;
- candidates per minute with two `nas search` processes (two run directories, one worker each) on one
  PostgreSQL study against one (needs ``NAS_TEST_POSTGRES_URL``, see ``.ci/postgres``).
Figures go to results/benchmarks/distributed_training.json and multi_machine_search.json. Run with
`pytest -m benchmark tests/benchmarks/test_scale_benchmarks.py`. On a 2-core machine shared with other jobs
the figures are noisy: they say what the machinery costs, not what N GPUs would gain.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.core.config import default_config, merge_config, write_config
from nas.core.run_dir import RunDir
from supernet import load_checkpoint

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3600)]
RESULTS = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _train(nproc: int, config: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
         "-m", "nas", "train-supernet", "--config", str(config), "--out", str(out)],
        check=True, capture_output=True, env=_env(), cwd=ROOT, timeout=1800,
    )  # fmt: skip
    return time.perf_counter() - start


def _volume_rank(rank: int, world: int, port: int, out: str) -> None:
    """One DDP step of the default supernet, counting the bytes each all-reduce of gradients carries."""
    import numpy as np
    import torch.distributed as dist

    from nas.core.config import make_space
    from supernet import build_supernet
    from supernet.distributed import DistributedContext, wrap_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    cfg = default_config()
    space = make_space(cfg, cfg.data.load())
    net = build_supernet(space, seed=0)
    model: Any = wrap_model(net, DistributedContext(rank, rank, world, torch.device("cpu"), "gloo"))
    counted: list[int] = []

    def hook(state, bucket):  # no annotations: DDP checks them against its own classes
        buffer = bucket.buffer()
        counted.append(buffer.numel() * buffer.element_size())
        return dist.all_reduce(buffer.div_(world), async_op=True).get_future().then(lambda f: f.value()[0])

    model.register_comm_hook(None, hook)
    arch = space.sample(np.random.default_rng(0))
    x = torch.randn(32, *space.input_shape(1, arch)[1:])
    model(x, arch).sum().backward()
    path_bytes = sum(p.numel() * p.element_size() for p in net.parameters() if p.grad is not None)
    total_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    if rank == 0:
        Path(out).write_text(json.dumps({"allreduce_bytes": sum(counted), "buckets": len(counted),
                                         "path_param_bytes": path_bytes, "supernet_param_bytes": total_bytes}))
    dist.destroy_process_group()


def test_distributed_training_throughput_and_communication(tmp_path: Path) -> None:
    cfg = merge_config(default_config(), {"supernet": {"epochs": 3, "warmup_epochs": 0.0}})
    config = write_config(cfg, tmp_path / "c.yaml")
    figures: dict[str, Any] = {"setup": "default task (digits 16x16, small shufflenet), global batch 64, 3 epochs, 1 thread a process"}
    for nproc in (1, 2):
        wall = _train(nproc, config, tmp_path / f"n{nproc}")
        history = load_checkpoint(tmp_path / f"n{nproc}" / "supernet" / "supernet.pt")["metrics"]
        images = sum(h["images_per_s"] * h["seconds"] for h in history) if nproc == 1 else None
        train_seconds = sum(h["seconds"] for h in history)
        figures[f"processes_{nproc}"] = {
            "wall_s_including_start": round(wall, 1),
            "training_s": round(train_seconds, 2),
            "images_per_s": round(sum(h["images_per_s"] for h in history) / len(history), 1),
            "final_loss": round(history[-1]["loss"], 4),
        }
        if images is not None:
            figures["images_per_epoch"] = round(images / len(history))
    figures["speedup_2_vs_1"] = round(figures["processes_2"]["images_per_s"] / figures["processes_1"]["images_per_s"], 2)

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "volume.json"
    mp.spawn(_volume_rank, args=(2, port, str(out)), nprocs=2, join=True)
    volume = json.loads(out.read_text())
    step = volume["allreduce_bytes"]
    volume["ring_allreduce_bytes_per_process"] = {
        str(n): round(2 * (n - 1) / n * step) for n in (2, 4, 8, 16)
    }  # each process sends (and receives) 2 (N-1)/N of the buffer in a ring all-reduce
    volume["note"] = (
        "DDP with find_unused_parameters all-reduces every bucket each step, the unused parameters' zeros "
        "included; path_param_bytes is what one step's path actually needs"
    )
    figures["communication_per_step"] = volume
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed_training.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert step >= volume["supernet_param_bytes"] > volume["path_param_bytes"] > 0


def _search_run(trained: Path, dest: Path, url: str) -> RunDir:
    shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("study.journal*", "trials.csv", ".*.lock", "run.json"))
    run = RunDir(dest)
    write_config(merge_config(run.load_config(), {"search": {"storage": url, "sampler": "random"}}), run.config_path)
    return run


def _fresh_database(url: str, name: str) -> str:
    import sqlalchemy

    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sqlalchemy.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def test_candidates_per_minute_two_search_processes_on_one_postgresql_study(tmp_path: Path) -> None:
    url = os.environ.get("NAS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: set NAS_TEST_POSTGRES_URL (see .ci/postgres)")
    from nas.pipeline import prepare_run, train_run

    # The default run with a supernet trained for 10 epochs instead of 60: the candidates cost the same to evaluate.
    cfg = merge_config(default_config(), {"supernet": {"epochs": 10}})
    trained = prepare_run(cfg, tmp_path / "trained")
    train_run(trained, progress=False)
    trials = 16
    figures: dict[str, Any] = {
        "trials": trials,
        "setup": "default run (supernet trained 10 epochs), random sampler, 1 worker a process, both on this machine",
    }
    for processes in (1, 2):
        db = _fresh_database(url, f"nas_bench_{processes}")
        runs = [_search_run(trained.root, tmp_path / f"p{processes}_{i}", db) for i in range(processes)]
        start = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-m", "nas", "search", "--run", str(r.root), "--trials", str(trials)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=ROOT)
            for r in runs
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=3600)
            assert proc.returncode == 0, err.decode()[-2000:]
        seconds = time.perf_counter() - start
        figures[f"processes_{processes}"] = {"seconds": round(seconds, 1), "candidates_per_min": round(trials / seconds * 60, 1)}
    figures["speedup_2_vs_1"] = round(figures["processes_2"]["candidates_per_min"] / figures["processes_1"]["candidates_per_min"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "multi_machine_search.json").write_text(json.dumps(figures, indent=2) + "\n")
