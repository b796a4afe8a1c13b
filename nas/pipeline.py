"""The steps of a run, each resumable: train the supernet, search, report, export; and `nas run` = all four."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.core.config import load_data
from nas.core.errors import UsageError
from nas.core.run_dir import RunDir
from nas.export.winner import export_run, exported_already
from nas.search.records import run_records
from profilers import torch_threads

if TYPE_CHECKING:
    from nas.core.config import RunConfig

__all__ = ["prepare_run", "report_run", "run_all", "train_run"]


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
    from nas.core.config import load_config, write_config
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


def train_run(run: RunDir, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) the run's supernet. Returns the final training metrics."""
    from nas.core.config import make_space
    from supernet import build_supernet, train_supernet

    cfg = run.load_config()
    data = load_data(cfg)
    space = make_space(cfg, data)
    supernet = build_supernet(space, seed=cfg.seed)
    cost_fn = None
    if cfg.supernet.sampler == "budget":
        cost_fn = _cost_function(space, cfg.supernet.budget_metric)
    start = time.perf_counter()
    with torch_threads(cfg.supernet.threads):
        result = train_supernet(
            supernet, data.train, cfg.supernet, run.supernet_dir, progress=progress, cost_fn=cost_fn
        )
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


def report_run(run: RunDir, budgets: dict[str, Any] | None = None) -> Path:
    """Write report.md/.html and the Pareto plots for the run's candidates."""
    from nas.report.report import library_versions, write_report

    cfg = run.load_config()
    records = run_records(run)
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


def run_all(cfg: RunConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """`nas run`: train -> search -> report -> export, each step resuming what the run directory has."""
    from nas.search.engine import run_search

    run = prepare_run(cfg, out)
    start = time.perf_counter()
    print(f"[1/4] supernet training -> {run.supernet_dir}")
    train_run(run, progress=progress)
    print(f"[2/4] search ({cfg.search.sampler}, {cfg.search.trials} candidates, {cfg.search.workers} worker(s))")
    if cfg.search.engine == "ray":
        from nas.search.ray.engine import run_ray_search

        summary = run_ray_search(run, progress=progress)
    else:
        summary = run_search(run, progress=progress)
    print(f"      {summary.complete} complete, {summary.failed} failed, {summary.duplicates} duplicate proposals")
    print("[3/4] export of the winner")
    exported = exported_already(run) or export_run(run)
    print("[4/4] report")
    report = report_run(run)
    run.update_info(timings={"run_last_s": time.perf_counter() - start})
    return {"report": str(report), "html": str(report.with_suffix(".html")), "onnx": exported["onnx"]}
