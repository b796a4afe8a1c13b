"""The steps of a run, each resumable: train the supernet, search, report, export; and `nas run` = all four."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas.core.config import load_data
from nas.core.errors import IncompleteError, UsageError
from nas.core.run_dir import RunDir
from nas.export.winner import export_run, find_export, pick_candidate
from nas.search.records import run_records
from profilers import torch_threads

if TYPE_CHECKING:
    from nas.core.config import RunConfig
    from supernet.distributed import DistributedContext

__all__ = ["prepare_run", "report_run", "run_all", "train_run"]


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {_shown(va)!r} -> {_shown(vb)!r}")
    return out


def _shown(value: Any) -> Any:
    """A config value as it may be printed: database URLs without their password."""
    from nas.search.storage import masked_url

    return masked_url(value) if isinstance(value, str) and "://" in value else value


def _shown_config(cfg: RunConfig, info: dict[str, Any]) -> dict[str, Any]:
    """The config as the report shows it: the storage URL masked, and the Ray address the search really used."""
    shown = cfg.model_dump(mode="json")
    search = shown["search"]
    if search.get("storage"):
        search["storage"] = _shown(search["storage"])
    used = info.get("search", {})
    if used.get("engine") == "ray" and used.get("ray_address") is not None:
        search["ray_address"] = used["ray_address"]
    return shown


# Keys that may differ when a run is resumed: they do not change what is computed, only how fast.
_RESUME_FREE = {
    "supernet.threads",
    "search.workers",
    "search.trials",
    "search.storage",  # the search refuses another storage once it holds candidates (nas.search.session)
    "search.heartbeat_interval",
    "search.heartbeat_grace",
    "search.engine",
    "search.ray_address",
    "search.ray_storage_path",
    "search.ray_dashboard",
    "search.max_failures",
    "report.budgets",
    "ranking",  # the quick ranking check reads the search's results, it changes none of them
}


def prepare_run(cfg: RunConfig, out: Path, *, fresh: bool = False) -> RunDir:
    """Create the run directory with its config.yaml, or check that an existing one has the same config.

    ``fresh``: delete what earlier runs wrote there first (``nas run --reference``: a reference run never
    inherits another run's timings, exports or records).
    """
    from nas.core.config import load_config, write_config
    from supernet import supported_spaces

    if cfg.space.name not in supported_spaces():
        raise UsageError(
            f"space {cfg.space.name!r} has no supernet yet, so it cannot be trained or searched; "
            f"spaces with a supernet: {', '.join(supported_spaces())} (every space can be profiled: nas profile)"
        )
    run = RunDir(out)
    if fresh:
        run.clear_generated()
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


def train_run(run: RunDir, *, progress: bool = True, distributed: DistributedContext | None = None) -> dict[str, Any]:
    """Train (or resume training) the run's supernet. Returns the final training metrics.

    ``distributed``: this process's place in a torchrun job (``supernet.init_distributed``); rank 0 alone
    writes the checkpoints and run.json.
    """
    from nas.core.config import make_space
    from supernet import build_supernet, train_supernet

    cfg = run.load_config()
    data = load_data(cfg)
    if len(data.train) < cfg.supernet.batch_size:
        raise UsageError(
            f"the training split has {len(data.train)} images, fewer than supernet.batch_size "
            f"{cfg.supernet.batch_size}; set supernet.batch_size to at most {len(data.train)} or add data"
        )
    space = make_space(cfg, data)
    supernet = build_supernet(space, seed=cfg.seed)
    cost_fn = None
    if cfg.supernet.sampler == "budget":
        cost_fn = _cost_function(space, cfg.supernet.budget_metric)
    start = time.perf_counter()
    with torch_threads(cfg.supernet.threads):
        result = train_supernet(
            supernet, data.train, cfg.supernet, run.supernet_dir, progress=progress, cost_fn=cost_fn,
            distributed=distributed,
        )
    seconds = time.perf_counter() - start
    if distributed is not None and not distributed.is_main:
        return dict(result.final)
    if distributed is not None:
        run.update_info(distributed={"world_size": distributed.world_size, "backend": distributed.backend})
    # Time adds up over the calls that trained this checkpoint; a training from scratch starts the count again.
    previous = run.read_info().get("timings", {}).get("train_s", 0.0) if result.resumed_from_epoch > 0 else 0.0
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


def report_run(run: RunDir, budgets: dict[str, Any] | None = None, *, export: bool = True) -> Path:
    """Write report.md/.html and the Pareto plots; every section describes the one candidate selected.

    The winner is chosen by :func:`nas.export.winner.pick_candidate` under ``budgets`` (default: the run's
    ``report.budgets``), the rule ``nas export --best`` uses. Its export (profile, guideline audit, ONNX check) is
    the checked export of that candidate from this supernet; with ``export`` it is made when missing.
    """
    from nas.report.report import library_versions, write_report

    cfg = run.load_config()
    records = run_records(run)
    if budgets is None:
        budgets = dict(cfg.report.budgets)
    info = run.read_info()
    run_info: dict[str, Any] = {
        "config": _shown_config(cfg, info),
        "device": info.get("device", {}),
        "versions": library_versions(),
        "timings": info.get("timings", {}),
        "objectives": list(cfg.search.objectives),
        "engine": info.get("search", {}).get("engine", cfg.search.engine),
        "sampler": cfg.search.sampler,
    }
    winner = _selected(records, budgets)
    if winner is not None:
        bundle = find_export(run, winner)
        if bundle is None and export:
            print(f"      exporting trial {winner.trial}, the selected candidate (its profile, audit and ONNX check)")
            bundle = export_run(run, trial=winner.trial)
        if bundle is not None:
            run_info["export"] = bundle
            run_info["winner_profile"] = bundle.get("profile", {})
            if bundle.get("latency_table"):
                run_info["latency_table"] = bundle["latency_table"]
        else:
            run_info["not_exported"] = winner.trial
    paths = write_report(run.root, records, budgets=budgets, run_info=run_info)
    return Path(paths.markdown)


def _selected(records: list[Any], budgets: dict[str, float]) -> Any:
    try:
        return pick_candidate(records, None, budgets)
    except UsageError:  # no complete candidate: the report says so
        return None


def run_all(cfg: RunConfig, out: Path, *, progress: bool = True, fresh: bool = False) -> dict[str, Any]:
    """`nas run`: train -> search -> export -> report, each step resuming what the run directory has."""
    from nas.search.engine import run_search

    run = prepare_run(cfg, out, fresh=fresh)
    start = time.perf_counter()
    print(f"[1/5] supernet training -> {run.supernet_dir}")
    train_run(run, progress=progress)
    print(f"[2/5] search ({cfg.search.sampler}, {cfg.search.trials} candidates, {cfg.search.workers} worker(s))")
    if cfg.search.engine == "ray":
        from nas.search.ray.engine import run_ray_search

        summary = run_ray_search(run, progress=progress)
    else:
        summary = run_search(run, progress=progress)
    print(f"      {summary.complete} complete, {summary.failed} failed, {summary.duplicates} duplicate proposals")
    if summary.short:
        raise IncompleteError(
            f"the search ended with {summary.complete} of {summary.target} candidates complete; rerun to resume"
        )
    print("[3/5] export of the winner")
    winner = pick_candidate(run_records(run), None, dict(cfg.report.budgets))
    exported = find_export(run, winner)
    if exported is not None:
        print(f"      trial {winner.trial} was exported before from this supernet: {exported['onnx']}")
    else:
        exported = export_run(run, trial=winner.trial)
    quick = cfg.ranking
    if quick.quick_check:
        from nas.ranking import rank_run

        print(f"[4/5] quick ranking check ({quick.archs} architectures, {quick.seeds} seed(s), {quick.epochs} epochs)")
        check = rank_run(run, archs=quick.archs, seeds=quick.seeds, epochs=quick.epochs, keep_fuller=True)
        print(f"      verdict: {check['verdict']}: {check['reason']}")
    else:
        print("[4/5] quick ranking check: off (ranking.quick_check); 'nas rank' runs the full one")
    print("[5/5] report")
    report = report_run(run)
    run.update_info(timings={"run_last_s": time.perf_counter() - start})
    return {"report": str(report), "html": str(report.with_suffix(".html")), "onnx": exported["onnx"]}
