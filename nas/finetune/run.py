"""``nas finetune``: DetNAS's last step. The winner trained on its own, scored once on the held-out test split.

Steps: pick the candidate (``--trial N`` or the best under the report budgets, as ``nas export``); build it from
the supernet's weights (with the BN recalibration the search used) or from scratch; train it with the
:class:`~nas.finetune.Recipe` (checkpoint every epoch: rerun to resume); score it on the validation split and,
for this final number only, on the test split with a Wilson interval; export it to ONNX and check it in ONNX
Runtime exactly as ``nas export`` does. ``RUN/finetune/finetune.json`` keeps the figures the report shows:
search-time, inherited, fine-tuned and test accuracy side by side.

Learning rate: 0.1 from scratch; 0.02 from the supernet's weights, which are already trained (a large rate
would throw that away). Both can be changed (``lr``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from nas.core.config import load_data, make_space
from nas.core.errors import UsageError
from nas.finetune.evaluation import accuracy_with_interval
from nas.finetune.recipe import Recipe
from nas.finetune.training import train_standalone
from nas.search.records import run_records

if TYPE_CHECKING:
    from pathlib import Path

    from nas.core.run_dir import RunDir

__all__ = ["FINETUNE_FILE", "FinetuneRequest", "finetune_run"]

FINETUNE_FILE = "finetune/finetune.json"  # in the run directory; nas.report reads it
_LR = {"scratch": 0.1, "supernet": 0.02}


@dataclass(frozen=True)
class FinetuneRequest:
    """What ``nas finetune`` is asked to do (the command's options)."""

    trial: int | None = None  # None: the best candidate under the report budgets
    epochs: int = 20
    init: Literal["supernet", "scratch"] = "supernet"
    lr: float | None = None  # None: 0.1 from scratch, 0.02 from the supernet
    mixup_alpha: float = 0.0
    distill_weight: float = 0.0
    temperature: float = 4.0
    teacher: str = "largest"  # or MODULE:CALLABLE
    seed: int = 0

    def recipe(self, batch_size: int) -> Recipe:
        try:
            return Recipe(
                epochs=self.epochs, batch_size=batch_size, lr=self.lr or _LR[self.init], mixup_alpha=self.mixup_alpha,
                distill_weight=self.distill_weight, temperature=self.temperature, seed=self.seed,
                warmup_epochs=min(1.0, float(self.epochs)),
            )
        except ValueError as err:
            raise UsageError(f"bad fine-tuning option: {err}") from None


def finetune_run(run: RunDir, request: FinetuneRequest) -> dict[str, Any]:
    """Fine-tune a candidate of ``run`` and export it; returns (and writes) the summary."""
    from nas.export.check import verify_onnx
    from nas.export.winner import pick_candidate
    from nas.finetune.teacher import load_teacher
    from nas.search.candidate import scored_subnet
    from profilers import export_onnx, torch_threads
    from search_spaces import Architecture
    from supernet import load_supernet, top1_accuracy

    start = time.perf_counter()
    cfg = run.load_config()
    records = run_records(run)
    record = pick_candidate(records, request.trial, dict(cfg.report.budgets))
    data = load_data(cfg)
    space = make_space(cfg, data)
    supernet = load_supernet(run.require_supernet())
    arch = space.validate(Architecture(space.name, record.arch))
    recipe = request.recipe(min(cfg.supernet.batch_size, len(data.train)))
    out_dir = run.root / "finetune"
    stem = f"trial{record.trial}-{request.init}-{_digest(request, recipe)}"
    with torch_threads(cfg.supernet.threads):
        inherited = scored_subnet(supernet, arch, data, cfg.supernet, cfg.search.seed)
        inherited_val = top1_accuracy(inherited, data.val)
        if request.init == "supernet":
            model = inherited
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + request.seed)
                model = space.build(arch)
        teacher, teacher_text = None, None
        if recipe.distill_weight > 0:
            teacher, teacher_text = load_teacher(request.teacher, records, supernet, space, data, cfg)
        result = train_standalone(model, data.train, recipe, checkpoint=out_dir / f"{stem}.pt", teacher=teacher)
        val = accuracy_with_interval(model, data.val)
        test = accuracy_with_interval(model, data.test)  # the held-out split: this final number only
    onnx_path = out_dir / f"{stem}.onnx"
    info = export_onnx(model, torch.zeros(space.input_shape(1, arch)), onnx_path)
    inputs = torch.stack([data.val[i][0] for i in range(len(data.val))])
    labels = torch.stack([torch.as_tensor(data.val[i][1]) for i in range(len(data.val))])
    check = verify_onnx(
        onnx_path, model, inputs, labels, threads=cfg.search.latency_threads,
        latency_batch_sizes=(cfg.search.latency_batch_size,),
    )
    summary = {
        "trial": record.trial,
        "arch_id": arch.arch_id,
        "init": request.init,
        "request": asdict(request),
        "recipe": recipe.dump(),
        "teacher": teacher_text,
        "val_accuracy_search": record.accuracy,
        "val_accuracy_inherited": inherited_val,
        "val_accuracy_finetuned": val.to_dict(),
        "test_accuracy": test.to_dict(),
        "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch,
        "onnx": str(onnx_path),
        "export": info.to_dict(),
        "check": check.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    _write_json(run.root / FINETUNE_FILE, summary)
    run.update_info(finetune={k: summary[k] for k in ("trial", "init", "onnx", "seconds")})
    return summary


def _digest(request: FinetuneRequest, recipe: Recipe) -> str:
    """A short name for the settings, so that two different fine-tunings never share a checkpoint."""
    text = json.dumps({"recipe": recipe.dump(), "teacher": request.teacher if recipe.distill_weight else None},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(partial, path)
