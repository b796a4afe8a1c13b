"""The steps of a run, each resumable: train the supernet, search, report, export; and `nas run` = all four."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.errors import UsageError
from nas.run_dir import RunDir

if TYPE_CHECKING:
    from nas.config import RunConfig
    from nas.records import CandidateRecord

__all__ = ["export_run", "prepare_run", "report_run", "run_all", "train_run"]


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out


# Keys that may differ when a run is resumed: they do not change what is computed, only how fast.
_RESUME_FREE = {
    "supernet.threads",
    "search.workers",
    "search.trials",
    "search.storage",
    "search.engine",
    "search.ray_address",
    "search.ray_storage_path",
    "search.ray_dashboard",
    "search.max_failures",
    "report.budgets",
}


def prepare_run(cfg: RunConfig, out: Path) -> RunDir:
    """Create the run directory with its config.yaml, or check that an existing one has the same config."""
    from nas.config import load_config, write_config
    from supernet import supported_spaces

    if cfg.space.name not in supported_spaces():
        raise UsageError(
            f"space {cfg.space.name!r} has no supernet yet, so it cannot be trained or searched; "
            f"spaces with a supernet: {', '.join(supported_spaces())} (every space can be profiled: nas profile)"
        )
    run = RunDir(out)
    if run.config_path.is_file():
        existing = load_config(run.config_path)
        diff = [
            d
            for d in _config_diff(existing.model_dump(mode="json"), cfg.model_dump(mode="json"))
            if not any(d.split(":")[0] == key or d.startswith(key + ".") for key in _RESUME_FREE)
        ]
        if diff:
            raise UsageError(
                f"{out} already holds a run with another config ({'; '.join(diff[:5])}); "
                "rerun with the same config to resume, or choose another --out"
            )
    write_config(cfg, run.config_path)
    run.update_info(
        name=cfg.name,
        device={"cpu": platform.processor() or platform.machine(), "cores": torch.get_num_threads(), "platform": platform.platform()},
    )
    return run


def load_data(cfg: RunConfig) -> Any:
    """The run's data; a missing directory, an empty class or an unreadable file is bad input (exit 2)."""
    try:
        return cfg.data.load()
    except (ValueError, OSError) as err:
        raise UsageError(f"data: {err}") from None


def train_run(run: RunDir, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) the run's supernet. Returns the final training metrics."""
    from nas.config import make_space
    from supernet import build_supernet, train_supernet

    cfg = run.load_config()
    data = load_data(cfg)
    space = make_space(cfg, data)
    supernet = build_supernet(space, seed=cfg.seed)
    cost_fn = None
    if cfg.supernet.sampler == "budget":
        cost_fn = _cost_function(space, cfg.supernet.budget_metric)
    start = time.perf_counter()
    result = train_supernet(supernet, data.train, cfg.supernet, run.supernet_dir, progress=progress, cost_fn=cost_fn)
    seconds = time.perf_counter() - start
    previous = run.read_info().get("timings", {}).get("train_s", 0.0)
    run.update_info(timings={"train_s": previous + seconds}, data=data.describe(), training=result.final)
    return dict(result.final)


def _cost_function(space: Any, metric: str) -> Any:
    from profilers import count_all

    allowed = ("mult_adds", "params", "memory_access_bytes")
    if metric not in allowed:
        raise UsageError(f"supernet.budget_metric {metric!r} is not allowed; allowed: {', '.join(allowed)}")

    def cost(arch: Any) -> float:
        model = space.build(arch).eval()
        counts = count_all(model, torch.zeros(space.input_shape(1, arch)))
        return float(getattr(counts, metric))

    return cost


def _records(run: RunDir) -> list[CandidateRecord]:
    from nas.records import read_trials_csv

    try:
        return read_trials_csv(run.trials_csv)
    except ValueError as err:
        raise UsageError(f"{err}; run 'nas search --run {run.root}' first") from None


def report_run(run: RunDir, budgets: dict[str, float] | None = None) -> Path:
    """Write report.md/.html and the Pareto plots for the run's candidates."""
    from nas.report import library_versions, write_report

    cfg = run.load_config()
    records = _records(run)
    if budgets is None:
        budgets = dict(cfg.report.budgets)
    info = run.read_info()
    run_info = {
        "config": cfg.model_dump(mode="json"),
        "device": info.get("device", {}),
        "versions": library_versions(),
        "timings": info.get("timings", {}),
        "objectives": list(cfg.search.objectives),
        "engine": info.get("search", {}).get("engine", cfg.search.engine),
        "sampler": cfg.search.sampler,
    }
    if "export" in info:
        run_info["export"] = info["export"]
    if "winner_profile" in info:
        run_info["winner_profile"] = info["winner_profile"]
    if "latency_table" in info:
        run_info["latency_table"] = info["latency_table"]
    paths = write_report(run.root, records, budgets=budgets, run_info=run_info)
    return Path(paths.markdown)


def _pick(records: list[CandidateRecord], trial: int | None, budgets: dict[str, float]) -> CandidateRecord:
    from nas.report import select_best

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
    from nas.config import make_space
    from nas.evaluate import recalibrated_subnet
    from nas.onnx_export import export_onnx, verify_onnx
    from profilers import profile_model
    from search_spaces import Architecture
    from supernet import evaluate, load_supernet

    cfg = run.load_config()
    record = _pick(_records(run), trial, dict(cfg.report.budgets))
    data = load_data(cfg)
    space = make_space(cfg, data)
    supernet = load_supernet(run.require_supernet())
    arch = space.validate(Architecture(space.name, record.arch))
    model = recalibrated_subnet(supernet, arch, data, cfg.supernet, cfg.search.seed)
    accuracy = evaluate(model, data.val, cfg.search.eval_batch_size)
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
    table_info = _latency_table_check(run, space, arch, cfg, profile.latency.median_ms if profile.latency else math.nan)
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

    from nas.latency_table import TABLE_NAME, load_or_build, predict_latency

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


def _exported_already(run: RunDir) -> dict[str, Any] | None:
    """The previous export of this run if it is still the best candidate and its files are there."""
    from nas.report import select_best

    previous = run.read_info().get("export")
    if not previous or not Path(previous.get("onnx", "")).is_file():
        return None
    best = select_best(_records(run), dict(run.load_config().report.budgets)) or select_best(_records(run), {})
    if best is None or best.trial != previous.get("trial"):
        return None
    print(f"      trial {best.trial} was exported before: {previous['onnx']}")
    return dict(previous)


def run_all(cfg: RunConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """`nas run`: train -> search -> report -> export, each step resuming what the run directory has."""
    from nas.search import run_search

    run = prepare_run(cfg, out)
    start = time.perf_counter()
    print(f"[1/4] supernet training -> {run.supernet_dir}")
    train_run(run, progress=progress)
    print(f"[2/4] search ({cfg.search.sampler}, {cfg.search.trials} candidates, {cfg.search.workers} worker(s))")
    if cfg.search.engine == "ray":
        from nas.ray_engine import run_ray_search

        summary = run_ray_search(run, progress=progress)
    else:
        summary = run_search(run, progress=progress)
    print(f"      {summary.complete} complete, {summary.failed} failed, {summary.duplicates} duplicate proposals")
    print("[3/4] export of the winner")
    exported = _exported_already(run) or export_run(run)
    print("[4/4] report")
    report = report_run(run)
    run.update_info(timings={"run_last_s": time.perf_counter() - start})
    return {"report": str(report), "html": str(report.with_suffix(".html")), "onnx": exported["onnx"]}
