"""Bad input of every kind: exit code 2, one short line on stderr, no traceback, nothing computed lost.

Fast cases run in-process through ``main``; the few that need a fresh interpreter (a stray module in the working
directory) run ``python -m nas``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nas.cli.main import build_parser, main
from nas.core.config import load_config
from supernet import CheckpointError, load_checkpoint, save_checkpoint

_ROOT = Path(__file__).resolve().parents[2]
_MAX_LINE = 400


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def _bad(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    code, err = _run(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and len(lines[0]) <= _MAX_LINE, err
    assert "Traceback" not in err and "weights_only=False" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------------------ output paths
def test_unwritable_outputs_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _bad(["run", "--out", str(a_file)], capsys, "is an existing file")
    _bad(["run", "--out", str(a_file / "run")], capsys, "which is a file")
    _bad(["train-supernet", "--out", str(a_file)], capsys, "is an existing file")  # no --config needed
    _bad(["config", "--out", str(a_file / "c.yaml")], capsys, "which is a file")
    _bad(["profile", "--space", "shufflenet", "--preset", "shufflenetv2-0.5x", "--latency-table", str(a_file)],
         capsys, "is an existing file")
    assert not any(p.name.startswith(".nas-write-probe") for p in tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_run_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _bad(["run", "--out", str(locked / "run")], capsys, "cannot be written")
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------------------------------------ YAML
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("supernet:\n  epochs: '1'\n", "supernet.epochs"),
        ("supernet:\n  lr: 1e-3\n", "write it with a dot"),
        ("report:\n  budgets: {latency_ms: '1.5'}\n", "latency_ms: '1.5' is not a number or a percentage"),
        ("report:\n  budgets: {latency_ms: .inf}\n", "finite"),
        ("search:\n  budgets: {latency_ms: .inf}\n", "finite"),
        ("search:\n  trials: 2.5\n", "search.trials"),
        ("[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
    ],
)
def test_yaml_types_are_strict(text: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    _bad(["train-supernet", "--config", str(config), "--out", str(tmp_path / "run")], capsys, needle)
    assert not (tmp_path / "run").exists()


def test_yaml_alias_bomb_is_refused_within_a_second(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["search:", '  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="aliases") as info:
        load_config(bomb)
    assert time.perf_counter() - start < 1.0 and len(str(info.value)) < _MAX_LINE
    _bad(["train-supernet", "--config", str(bomb), "--out", str(tmp_path / "run")], capsys, "aliases")


def test_budget_flags_refuse_infinity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad(["report", "--run", str(tmp_path), "--max-latency-ms", "inf"], capsys, "finite")
    _bad(["export", "--run", str(tmp_path), "--max-energy-mj", "nan"], capsys, "finite")


# ------------------------------------------------------------------------------------------------ architectures
def test_huge_or_deep_architecture_json_is_a_short_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge.json"
    huge.write_text('{"layer_0": "' + "x" * 10_000_000 + '"}')
    _bad(["profile", "--space", "shufflenet", "--arch", str(huge)], capsys, "larger than")
    _bad(["profile", "--space", "shufflenet", "--arch", "[" * 100_000 + "]" * 100_000], capsys, "--arch")
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' * 50_000 + "1" + "}" * 50_000)
    _bad(["profile", "--space", "shufflenet", "--arch", str(deep)], capsys, "nested too deeply")
    line = _bad(["spaces", "y" * 10_000], capsys, "unknown space")
    assert line.count("y") < 200


# ------------------------------------------------------------------------------------------------ user models
_MODELS = {
    "syntax_bad": ("def make(:\n", "failed to import: SyntaxError"),
    "import_bad": ("import no_such_package_xyz\n", "failed to import: ModuleNotFoundError"),
    "raises_on_import": ("raise RuntimeError('broken at import')\n", "RuntimeError: broken at import"),
    "raises_on_call": ("def make():\n    raise ValueError('cannot build')\n", "ValueError: cannot build"),
    "needs_args": ("def make(width):\n    return None\n", "TypeError"),
    "rejects_shape": (
        "import torch\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2))\n",
        "failed on an input of shape (3, 32, 32)",
    ),
}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_user_model_failures_name_the_users_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source, needle = _MODELS[name]
    module = f"user_{name}_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    _bad(["profile", "--model", f"{module}:make", "--input-size", "32"], capsys, "your model failed", needle)
    assert str(tmp_path) not in sys.path


def test_a_stray_module_in_the_working_directory_is_never_executed(tmp_path: Path) -> None:
    sentinel = tmp_path / "executed"
    for name in ("fvcore", "onnx", "yaml"):
        (tmp_path / f"{name}.py").write_text(f"open({str(sentinel)!r}, 'a').write({name!r})\nraise SystemExit(9)\n")
    (tmp_path / "mymodel.py").write_text("import torch\ndef make():\n    return torch.nn.Conv2d(3, 4, 1)\n")
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "nas", "profile", "--model", "mymodel:make", "--input-size", "8", "--repeats", "3"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert not sentinel.exists()
    assert "input size: --input-size" in result.stdout


def test_input_size_too_large_for_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    _bad(["profile", "--space", "shufflenet", "--preset", "shufflenetv2-0.5x", "--input-size", "100000"], capsys, "memory")
    config = tmp_path / "big.yaml"
    config.write_text("data:\n  input_size: 100000\n")
    _bad(["train-supernet", "--config", str(config), "--out", str(tmp_path / "run")], capsys, "data.input_size 100000")
    assert time.perf_counter() - start < 60


# ------------------------------------------------------------------------------------------------ run files
def _garbage(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        save_checkpoint({"format": 1, "epoch": 1, "model": {"w": torch.zeros(1000)}, "space": {}, "config": {},
                         "data": {}}, path)
        path.write_bytes(path.read_bytes()[:600])
    elif kind == "foreign":
        torch.save({"format": 1, "model": argparse.Namespace(x=1)}, path)  # an arbitrary object: pickled code
    else:
        torch.save({"weights": torch.zeros(3)}, path)  # plain weights, another tool's layout


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "foreign", "other_format"])
def test_damaged_checkpoints_are_refused(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "supernet.pt"
    _garbage(kind, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "weights_only" not in message and len(message) < _MAX_LINE
    if kind == "foreign":
        assert "untrusted, refused" in message


def test_damaged_checkpoint_through_the_command(tmp_path: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    (run / "supernet").mkdir(parents=True)
    _garbage("foreign", run / "supernet" / "supernet.pt")
    _bad(["train-supernet", "--config", str(config), "--out", str(run)], capsys, "untrusted, refused")


def test_a_killed_checkpoint_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    stale = tmp_path / ".supernet.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint({"format": 1}, tmp_path / "supernet.pt")
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["supernet.pt"]


def test_garbage_run_files(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "trials.csv").write_text("trial,arch,accuracy\nnot-a-number,{{{,x\n")
    _bad(["report", "--run", str(run)], capsys, "trials.csv")
    (run / "run.json").write_bytes(os.urandom(300))
    _bad(["run", "--config", str(run / "config.yaml"), "--out", str(run)], capsys, "run.json is damaged")
    assert (run / "supernet" / "supernet.pt").is_file()  # nothing computed is lost
    (run / "run.json").write_text("{}")
    (run / "study.journal").write_text('{"op_code": 0, "worker_id": "x"\ngarbage line\n{"op_code": 1}\n')
    _bad(["search", "--run", str(run), "--trials", "1"], capsys, "study.journal")


# ------------------------------------------------------------------------------------------------ data
def test_a_data_set_with_one_class_is_refused(tmp_path: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    folder = tmp_path / "images" / "only_cats"
    folder.mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(folder / f"{i}.png")
    config = tmp_path / "one.yaml"
    config.write_text(yaml.safe_dump({"data": {"dataset": "image_folder", "root": str(tmp_path / "images")}}))
    _bad(["train-supernet", "--config", str(config), "--out", str(tmp_path / "run")], capsys, "at least 2")


def test_a_training_set_smaller_than_a_batch_says_so(tmp_path: Path, tiny_config, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path / "small.yaml", data={"train_limit": 20}, supernet={"batch_size": 64})
    _bad(["train-supernet", "--config", str(config), "--out", str(tmp_path / "run")], capsys, "set supernet.batch_size to at most 20")


# ------------------------------------------------------------------------------------------------ the command itself
def test_every_flag_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"nas {name} {action.option_strings or action.dest} has no help"


def test_version_and_default_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nas

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"nas {nas.__version__}"
    project = (_ROOT / "pyproject.toml").read_text()
    assert f'version = "{nas.__version__}"' in project
    assert main(["config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    out = tmp_path / "default.yaml"
    out.write_text(yaml.safe_dump(printed))
    from nas.core.config import default_config

    assert load_config(out) == default_config()


def test_spaces_with_a_layout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces", "shufflenet", "--layout", "small"]) == 0
    assert '"input_size": 16' in capsys.readouterr().out
    _bad(["spaces", "shufflenet", "--layout", "huge"], capsys, "unknown layout", "small")
