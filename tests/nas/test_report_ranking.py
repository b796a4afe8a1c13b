"""The report's "Can this ranking be trusted?" and "Fine-tuned winner" sections, from the files in a run directory."""

from __future__ import annotations

import json
from pathlib import Path

from nas.ranking import analyse
from nas.ranking.plan import RankedArch, task_key
from nas.report.markup import Bullets, Image, Para, Table, render_markdown
from nas.report.ranking import trust_sections


def test_without_files_the_report_says_how_to_check(tmp_path: Path) -> None:
    text = render_markdown(trust_sections(tmp_path))
    assert "Can this ranking be trusted?" in text and "nas rank --run" in text
    assert "Fine-tuned winner" not in text


def test_with_a_ranking_and_a_finetune(tmp_path: Path) -> None:
    archs = [RankedArch(t, f"a{t}", {}, 0.5 + t / 20, 0.3 + t / 30, t == 4) for t in range(6)]
    accuracies = {task_key(f"a{t}", s, 2): 0.6 + t / 25 + s / 200 for t in range(6) for s in range(2)}
    (tmp_path / "ranking.json").write_text(json.dumps(analyse(archs, accuracies, 2, 2)))
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "finetune.json").write_text(json.dumps({
        "trial": 4, "arch_id": "a4", "init": "supernet", "recipe": {"epochs": 3, "lr": 0.02},
        "val_accuracy_search": 0.7, "val_accuracy_inherited": 0.7,
        "val_accuracy_finetuned": {"accuracy": 0.8, "low": 0.75, "high": 0.85},
        "test_accuracy": {"accuracy": 0.78, "low": 0.73, "high": 0.83, "n": 300},
        "onnx": "x.onnx", "check": {"passed": True},
    }))
    blocks = trust_sections(tmp_path)
    text = render_markdown(blocks)
    assert "Verdict: TRUSTED" in text and "Kendall tau, supernet vs standalone: +1.00" in text
    assert "Seed-noise ceiling" in text and "Without BN recalibration" in text
    assert "ranks 2 of 6" in text
    assert any(isinstance(b, Image) and b.path.is_file() for b in blocks)
    assert any(isinstance(b, Table) and b.rows[0][2] == "80.0 [75.0, 85.0]" for b in blocks)
    assert "78.0 [73.0, 83.0] (n=300)" in text and "check passed" in text
    assert any(isinstance(b, Bullets) for b in blocks) and any(isinstance(b, Para) for b in blocks)
