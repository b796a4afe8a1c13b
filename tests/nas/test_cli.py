"""The `nas` command line: `spaces`, `profile`, and exit code 2 with one line for every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli.main import main

_ROOT = Path(__file__).resolve().parents[2]


def _nas(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m nas`` as a user runs it (from any directory: the project on PYTHONPATH, as an install puts it)."""
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def _usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_spaces_lists_every_space_with_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces", "--json"]) == 0
    spaces = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert set(spaces) == {"shufflenet", "nasnet", "efficientnet"}
    assert "shufflenetv2-1.0x" in spaces["shufflenet"]["presets"]
    assert "nasnet-a-mobile" in spaces["nasnet"]["presets"]
    assert "efficientnet-b7" in spaces["efficientnet"]["presets"]
    assert main(["spaces", "efficientnet"]) == 0
    assert "alpha_beta_gamma" in capsys.readouterr().out


def test_profile_json_has_the_contract_keys() -> None:
    result = _nas("profile", "--space", "shufflenet", "--preset", "shufflenetv2-0.5x", "--input-size", "64",
                  "--repeats", "5", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("params", "mult_adds", "memory_access_bytes", "elementwise_ops"):
        assert isinstance(data[key], int) and data[key] > 0
    assert data["params"] == 1365792
    assert data["latency_ms"]["median"] > 0 and data["latency_ms"]["threads"] == 1
    assert data["energy_mj"]["value"] > 0 and data["energy_mj"]["source"] in ("nvml", "rapl", "model")
    assert isinstance(data["guidelines"], list) and data["guidelines"]


def test_profile_any_user_model(tmp_path: Path) -> None:
    (tmp_path / "usermodels.py").write_text(
        "import torch\n"
        "def make_model():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1, bias=False), torch.nn.ReLU())\n"
    )
    result = _nas("profile", "--model", "usermodels:make_model", "--input-size", "8", "--repeats", "5", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 24 and data["mult_adds"] == 8 * 8 * 3 * 8
    # the paper's formula for a 1x1 conv: hw(c1 + c2) + c1*c2 elements, 4 bytes each, plus the ReLU's read and write
    assert data["memory_access_bytes"] == (64 * (3 + 8) + 3 * 8) * 4 + 2 * 64 * 8 * 4


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["profile", "--space", "nope", "--preset", "x"], ["unknown space 'nope'", "shufflenet"]),
        (["profile", "--space", "shufflenet", "--preset", "nope"], ["unknown preset 'nope'", "shufflenetv2-1.0x"]),
        (["profile", "--space", "shufflenet", "--arch", "{bad"], ["not valid JSON"]),
        (["profile", "--space", "shufflenet", "--layout", "small", "--arch", '{"layer_0": "shuffle3", "layer_99": "x"}'],
         ["label 'layer_99' is not in space 'shufflenet'"]),
        (["profile", "--space", "shufflenet", "--arch", '{"layer_0": "shuffle9"}'],
         ["label 'layer_0': value 'shuffle9' is not allowed", "shuffle3"]),
        (["profile", "--space", "shufflenet"], ["needs --preset NAME or --arch JSON", "spos-imagenet"]),
        (["profile", "--model", "no_such_module:make"], ["no module 'no_such_module'"]),
        (["profile", "--model", "json"], ["MODULE:CALLABLE"]),
        (["profile", "--space", "shufflenet", "--preset", "spos-imagenet", "--batch", "0"], ["must be a positive integer"]),
        (["spaces", "nope"], ["unknown space 'nope'"]),
        (["report", "--run", "/nonexistent/run"], ["not a run directory"]),
        (["report", "--run", "/nonexistent/run", "--max-latency-ms", "-1"], ["non-negative"]),
        (["export", "--run", "/nonexistent/run"], ["not a run directory"]),
        (["export", "--run", "/nonexistent/run", "--out", "x.txt"], [".onnx"]),
        (["train-supernet", "--config", "/nonexistent.yaml", "--out", "/tmp/x"], ["does not exist"]),
        (["run", "--config", "/nonexistent.yaml"], ["does not exist"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    _usage_error(subprocess.CompletedProcess(args, code, "", err), *needles)


def test_bad_config_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("supernet:\n  epochz: 3\n")
    code = main(["train-supernet", "--config", str(cfg), "--out", str(tmp_path / "run")])
    _usage_error(subprocess.CompletedProcess([], code, "", capsys.readouterr().err), "epochz", "epochs")
    cfg.write_text("search:\n  budgets: {latency_ms: -3}\n")
    code = main(["run", "--config", str(cfg), "--out", str(tmp_path / "run")])
    _usage_error(subprocess.CompletedProcess([], code, "", capsys.readouterr().err), "latency_ms")


@pytest.mark.long
def test_profile_with_a_latency_table(tmp_path: Path) -> None:
    arch = json.dumps({f"layer_{i}": "shuffle5" for i in range(7)})
    args = ["profile", "--space", "shufflenet", "--layout", "small", "--arch", arch, "--threads", "1", "--json"]
    result = _nas(*args, "--latency-table", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)["latency_table"]
    assert (tmp_path / "latency_table.json").is_file() and table["entries"] > 0
    assert table["predicted_ms"] > 0 and table["measured_ms"] > 0
    # The prediction is in the measurement's range (the benchmark checks +/-10% on 50 architectures).
    assert 0.5 < table["predicted_ms"] / table["measured_ms"] < 2.0
