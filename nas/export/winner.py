"""The export of one candidate of a run: the same static model the search scored, to ONNX, checked.

:func:`export_run` rebuilds the subnet exactly as the search scored it (:func:`nas.search.candidate.scored_subnet`),
writes it with the project's one exporter (:func:`profilers.export_onnx`), checks it in ONNX Runtime against
PyTorch on the whole validation split (:func:`nas.export.check.verify_onnx`), profiles it and compares the run's
latency table with the measurement.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.core.config import load_data
from nas.core.errors import UsageError
from nas.search.records import run_records

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.run_dir import RunDir
    from nas.search.records import CandidateRecord

__all__ = ["export_run", "exported_already", "pick_candidate"]


def pick_candidate(records: list[CandidateRecord], trial: int | None, budgets: dict[str, float]) -> CandidateRecord:
    from nas.report.selection import select_best

    if trial is not None:
        for record in records:
            if record.trial == trial:
                if record.status != "COMPLETE":
                    raise UsageError(f"trial {trial} did not complete (status {record.status}); only complete trials export")
                return record
        known = sorted(r.trial for r in records if r.status == "COMPLETE")
        raise UsageError(f"trial {trial} is not a candidate of this run; complete trials: {known[:30]}")
    best = select_best(records, budgets)
    if best is None:
        best = select_best(records, {})
        if best is None:
            raise UsageError("this run has no complete candidate to export")
        print(f"no candidate meets the budgets {budgets}; exporting the most accurate one (trial {best.trial})")
    return best


def export_run(run: RunDir, *, trial: int | None = None, out: Path | None = None) -> dict[str, Any]:
    """Export a candidate (the best under the report budgets by default) to ONNX and check it in ONNX Runtime."""
    from nas.core.config import make_space
    from nas.export.check import verify_onnx
    from nas.search.candidate import scored_subnet
    from profilers import export_onnx, profile_model
    from search_spaces import Architecture
    from supernet import load_supernet, top1_accuracy

    cfg = run.load_config()
    record = pick_candidate(run_records(run), trial, dict(cfg.report.budgets))
    data = load_data(cfg)
    space = make_space(cfg, data)
    supernet = load_supernet(run.require_supernet())
    arch = space.validate(Architecture(space.name, record.arch))
    model = scored_subnet(supernet, arch, data, cfg.supernet, cfg.search.seed)
    accuracy = top1_accuracy(model, data.val, cfg.search.eval_batch_size)
    path = out or run.export_dir / f"trial{record.trial}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(space.input_shape(1, arch))
    info = export_onnx(model, example, path)
    n = len(data.val)  # parity and accuracy on the whole validation split
    inputs = torch.stack([data.val[i][0] for i in range(n)])
    labels = torch.stack([torch.as_tensor(data.val[i][1]) for i in range(n)])
    check = verify_onnx(
        path, model, inputs, labels, threads=cfg.search.latency_threads, latency_batch_sizes=(cfg.search.latency_batch_size,)
    )
    stem = path.with_suffix("")
    arch_path = stem.with_suffix(".arch.json")
    arch_path.write_text(json.dumps({**arch.to_dict(), "arch_id": arch.arch_id}, indent=2))
    state_path = stem.with_suffix(".state_dict.pt")
    torch.save(model.state_dict(), state_path)
    profile = profile_model(
        model, space.input_shape(1, arch)[1:], threads=cfg.search.latency_threads, guidelines=True, energy=True
    )
    # The table predicts the search's backend: compare it with the shipped file's timing on that backend.
    measured = check.latency.get(f"{cfg.search.latency_backend}_batch{cfg.search.latency_batch_size}")
    if measured is None and cfg.search.latency_backend == "eager" and profile.latency is not None:
        measured = profile.latency
    table_info = _latency_table_check(run, space, arch, cfg, measured.median_ms if measured is not None else math.nan)
    summary = {
        "trial": record.trial,
        "arch_id": arch.arch_id,
        "onnx": str(path),
        "arch_json": str(arch_path),
        "state_dict": str(state_path),
        "val_accuracy_search": record.accuracy,
        "val_accuracy_now": accuracy,
        "export": _plain(info),
        "check": _plain(check),
    }
    (stem.with_suffix(".export.json")).write_text(json.dumps(summary, indent=2, default=str))
    run.update_info(export=summary, winner_profile=profile.to_dict(), latency_table=table_info)
    if not math.isclose(accuracy, record.accuracy, abs_tol=1e-9):
        print(f"warning: accuracy now {accuracy:.4f} differs from the search's {record.accuracy:.4f}")
    return summary


def _latency_table_check(run: RunDir, space: Any, arch: Any, cfg: RunConfig, measured_ms: float) -> dict[str, Any]:
    """The run's latency table (built on first use) and its prediction for the winner against the measurement."""
    import warnings

    from nas.search.latency_table import TABLE_NAME, load_or_build, predict_latency

    search = cfg.search
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*noisy", category=RuntimeWarning)
        table = load_or_build(
            run.root,
            space,
            device=search.device,
            threads=search.latency_threads,
            batch_size=search.latency_batch_size,
            backend=search.latency_backend,
        )
        predicted = predict_latency(table, space, arch)
    return {
        "path": str(run.root / TABLE_NAME),
        "entries": len(table.entries),
        "statistic": table.statistic,
        "overhead_ms": table.overhead_ms,
        "winner_predicted_ms": predicted,
        "winner_measured_ms": measured_ms,
        "winner_relative_error": predicted / measured_ms - 1 if measured_ms > 0 else math.nan,
    }


def _plain(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else obj


def exported_already(run: RunDir) -> dict[str, Any] | None:
    """The previous export of this run if it is still the best candidate and its files are there."""
    from nas.report.selection import select_best

    previous = run.read_info().get("export")
    if not previous or not Path(previous.get("onnx", "")).is_file():
        return None
    best = select_best(run_records(run), dict(run.load_config().report.budgets)) or select_best(run_records(run), {})
    if best is None or best.trial != previous.get("trial"):
        return None
    print(f"      trial {best.trial} was exported before: {previous['onnx']}")
    return dict(previous)
