"""`torchrun -m nas train-supernet`: DDP over gloo processes on the CPU, checkpoints by rank 0, resume at any size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from supernet import load_checkpoint

# Dropout off and sync_bn on: then 1 and 2 processes compute the same function of the same global batch. Epochs of
# one step each, so that the recorded epoch losses are the losses of single steps. Three steps only: training this
# small supernet is chaotic on one process too (a 1e-7 relative change of the initial weights grows to a 1e-4
# relative change of the loss by the fourth step at lr 0.2, and to 5e-6-1e-3 at lr 0.02 depending on the data), so
# the rounding differences of another summation order stay within tolerance only for the first steps.
_SECTIONS = {
    "data": {"train_limit": 32, "val_limit": 64},
    "supernet": {
        "epochs": 3, "batch_size": 32, "lr": 0.02, "warmup_epochs": 0.0, "bn_batches": 1, "threads": 1, "sync_bn": True,
    },
}


def _torchrun(nproc: int, config: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
        "--max-restarts", "0", "-m", "nas", "train-supernet", "--config", str(config), "--out", str(out),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd()), "PYTHONUNBUFFERED": "1"}


def test_two_gloo_processes_train_as_one_on_the_same_global_batch(tmp_path: Path, tiny_config: object) -> None:
    config = tiny_config(tmp_path / "c.yaml", **_SECTIONS)  # type: ignore[operator]
    states = {}
    for nproc in (1, 2):
        result = subprocess.run(_torchrun(nproc, config, tmp_path / f"n{nproc}"), capture_output=True, text=True,
                                timeout=600, env=_env())
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"({nproc} processes, gloo)" in result.stdout
        states[nproc] = load_checkpoint(tmp_path / f"n{nproc}" / "supernet" / "supernet.pt")
    one, two = states[1], states[2]
    assert len(one["metrics"]) == len(two["metrics"]) == 3
    for a, b in zip(one["metrics"], two["metrics"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
    # Weights (|w| up to ~0.35) after three updates: rounding has grown to ~2e-5 here (see above); a wrong gradient
    # average or batch would be off by lr * gradient, ~1e-2.
    for name, tensor in one["model"].items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, two["model"][name], rtol=0, atol=1e-4, msg=name)


def _ranks(torchrun_pid: int) -> list[int]:
    """The training processes torchrun started (its children running nas)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == torchrun_pid and b"train-supernet" in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.faults
def test_kill_9_of_one_rank_then_a_rerun_resumes_at_another_world_size(tmp_path: Path, tiny_config: object) -> None:
    sections = {"data": {"train_limit": 256, "val_limit": 64}, "supernet": {**_SECTIONS["supernet"], "epochs": 6}}
    config = tiny_config(tmp_path / "c.yaml", **sections)  # type: ignore[operator]
    out = tmp_path / "run"
    ckpt = out / "supernet" / "supernet.pt"
    proc = subprocess.Popen(_torchrun(2, config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.time() + 400
        while not ckpt.is_file():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.2)
        ranks = _ranks(proc.pid)
        assert len(ranks) == 2
        os.kill(ranks[1], signal.SIGKILL)
        assert proc.wait(timeout=300) != 0  # torchrun gives up on the job
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    before = load_checkpoint(ckpt)
    assert 1 <= before["epoch"] < 6
    result = subprocess.run(_torchrun(1, config, out), capture_output=True, text=True, timeout=600, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    after = load_checkpoint(ckpt)
    assert after["epoch"] == 6 and len(after["metrics"]) == 6
    assert after["metrics"][: before["epoch"]] == before["metrics"]  # finished epochs kept, not redone
    assert not list((out / "supernet").glob(".supernet.pt.*"))  # no temporary file left behind
