"""The export of one candidate of a run: the same static model the search scored, to ONNX, checked, as a bundle.

:func:`export_run` picks the candidate (a trial, or the best under budgets with the report's own rule,
:func:`pick_candidate`), rebuilds the subnet exactly as the search scored it
(:func:`nas.search.candidate.scored_subnet`), writes it with the project's one exporter
(:func:`profilers.export_onnx`), adds the preprocessing and architecture (:mod:`nas.export.bundle`), checks it in ONNX
Runtime against PyTorch on the whole validation split (:func:`nas.export.check.verify_onnx`), profiles it and
compares the run's latency table with the measurement. The record ``trialN.export.json`` is written last.

An earlier export is reused (:func:`find_export`) only when its record says it is of the same candidate and of this
run's supernet (the checkpoint's SHA-256), and its ONNX file is there.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.core.config import load_data
from nas.core.errors import UsageError
from nas.export.bundle import BUNDLE_SUFFIXES, BundleWriter, add_onnx_metadata, preprocessing
from nas.search.records import run_records

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from nas.core.run_dir import RunDir
    from nas.search.records import CandidateRecord

__all__ = ["export_run", "find_export", "pick_candidate", "supernet_fingerprint"]


def pick_candidate(records: list[CandidateRecord], trial: int | None, budgets: dict[str, Any]) -> CandidateRecord:
    """Trial ``trial``, or the best under ``budgets`` (the most accurate overall when none meets them).

    ``nas report`` and ``nas export --best`` both select through this function, so they name the same candidate.
    """
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
    return best


def supernet_fingerprint(run: RunDir) -> str:
    """SHA-256 (16 hex digits) of the run's supernet checkpoint: which weights an export inherited."""
    digest = hashlib.sha256()
    with run.require_supernet().open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def find_export(run: RunDir, record: CandidateRecord, out: Path | None = None) -> dict[str, Any] | None:
    """The checked export of ``record`` from this run's supernet, if one exists (else None)."""
    onnx_path = out or run.export_dir / f"trial{record.trial}.onnx"
    record_path = onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + BUNDLE_SUFFIXES["record"])
    if not (record_path.is_file() and onnx_path.is_file() and run.checkpoint.is_file()):
        return None
    try:
        previous = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict):
        return None
    same = (
        previous.get("trial") == record.trial
        and previous.get("arch_id") == record.arch_id
        and previous.get("supernet_sha256") == supernet_fingerprint(run)
        and previous.get("check", {}).get("passed") is True
    )
    return previous if same else None


def export_run(
    run: RunDir, *, trial: int | None = None, out: Path | None = None, budgets: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Export a candidate (the best under ``budgets``, default the run's ``report.budgets``) as a checked bundle."""
    from nas.core.config import make_space
    from nas.core.data.resolution import at_resolution
    from nas.export.check import verify_onnx
    from nas.search.candidate import scored_subnet
    from profilers import export_onnx, profile_model
    from search_spaces import Architecture
    from supernet import load_supernet, top1_accuracy

    cfg = run.load_config()
    record = pick_candidate(run_records(run), trial, dict(cfg.report.budgets) if budgets is None else budgets)
    data = load_data(cfg)
    space = make_space(cfg, data)
    fingerprint = supernet_fingerprint(run)
    supernet = load_supernet(run.require_supernet())
    arch = space.validate(Architecture(space.name, record.arch))
    data = at_resolution(data, space.resolution(arch))  # the winner's own input size, as the search scored it
    model = scored_subnet(supernet, arch, data, cfg.supernet, cfg.search.seed)
    accuracy = top1_accuracy(model, data.val, cfg.search.eval_batch_size)
    path = out or run.export_dir / f"trial{record.trial}.onnx"
    arch_doc = {**arch.to_dict(), "arch_id": arch.arch_id, "layout": cfg.space.layout, "space_config": space.config_dict()}
    prep = preprocessing(data)
    writer = BundleWriter(path)
    try:
        staged = writer.staged("onnx")
        info = export_onnx(model, torch.zeros(space.input_shape(1, arch)), staged)
        add_onnx_metadata(
            staged,
            {
                **{f"preprocess.{k}": v for k, v in prep.items()},
                "architecture": arch_doc,
                "space": arch.space,
                "layout": cfg.space.layout or "",
                "trial": record.trial,
                "supernet_sha256": fingerprint,
                "producer": "nas-efficiency",
            },
        )
        n = len(data.val)  # parity and accuracy on the whole validation split
        inputs = torch.stack([data.val[i][0] for i in range(n)])
        labels = torch.stack([torch.as_tensor(data.val[i][1]) for i in range(n)])
        check = verify_onnx(
            staged, model, inputs, labels, threads=cfg.search.latency_threads,
            latency_batch_sizes=(cfg.search.latency_batch_size,),
        )
        writer.staged("arch").write_text(json.dumps(arch_doc, indent=2))
        torch.save(model.state_dict(), writer.staged("state_dict"))
        profile = profile_model(
            model, space.input_shape(1, arch)[1:], threads=cfg.search.latency_threads, guidelines=True, energy=True
        )
        # The table predicts the search's backend: compare it with the shipped file's timing on that backend.
        timing = check.latency.get(f"{cfg.search.latency_backend}_batch{cfg.search.latency_batch_size}")
        if timing is None and cfg.search.latency_backend == "eager" and profile.latency is not None:
            timing = profile.latency
        measured = timing.median_ms if timing is not None else math.nan
        table_info = _latency_table_check(run, space, arch, cfg, measured)
        summary = {
            "trial": record.trial,
            "arch_id": arch.arch_id,
            "supernet_sha256": fingerprint,
            "onnx": str(path),
            "arch_json": str(writer.final("arch")),
            "state_dict": str(writer.final("state_dict")),
            "bundle_json": str(writer.final("record")),
            "architecture": arch_doc,
            "preprocessing": prep,
            "val_accuracy_search": record.accuracy,
            "val_accuracy_now": accuracy,
            "export": {**_plain(info), "path": str(path)},
            "check": {**_plain(check), "path": str(path)},
            "profile": {**profile.to_dict(), "arch_id": arch.arch_id},
            "latency_table": table_info,
        }
        writer.commit(summary)
    except BaseException:
        writer.discard()
        raise
    run.update_info(export=summary, winner_profile=summary["profile"], latency_table=table_info)
    if not math.isclose(accuracy, record.accuracy, abs_tol=1e-9):
        print(f"warning: accuracy now {accuracy:.4f} differs from the search's {record.accuracy:.4f}", file=sys.stderr)
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
