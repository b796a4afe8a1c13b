"""Report sections about the run rather than the candidates: where the winner's deployable bundle is, its profile and
guideline audit (summarised: findings that matter first, the full table collapsed), its ONNX export, and the run's
device, library versions, timings and configuration (collapsed). No section dumps raw JSON.

Each takes the plain JSON data the pipeline keeps (``run_info`` of :func:`nas.report.report.write_report`) and tolerates
missing keys: a report is still written when a step has not run yet.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import numbers
import platform
from collections.abc import Mapping
from typing import Any

import yaml

from nas.report.markup import Block, Bullets, Code, Details, Heading, Para, Table

__all__ = ["RUN_INFO_KEYS", "deploy_lines", "export_section", "library_versions", "profile_section", "run_section"]

# The keys of run_info with a section of their own; any other key is shown as JSON under "Other run information".
RUN_INFO_KEYS: tuple[str, ...] = (
    "config",
    "device",
    "versions",
    "timings",
    "winner_profile",
    "export",
    "objectives",
    "engine",
    "sampler",
    "latency_table",
    "not_exported",
)
_PACKAGES = ("torch", "optuna", "onnx", "onnxruntime", "onnxscript", "ray", "numpy", "matplotlib", "fvcore")
_FINDING_COLUMNS = ("guideline", "severity", "scope", "name", "message")
_MAX_FINDINGS = 200
_MAX_LISTED = 8  # findings that matter, listed in full above the collapsed table
_MAX_VALUE = 120  # characters of a value shown in a key/value table


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on (those not installed are left out), and Python's."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _percent(value: Any) -> str:
    return f"{float(value):+.0%}" if isinstance(value, numbers.Real) and math.isfinite(float(value)) else "n/a"


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _parity_bound(check: Mapping[str, Any]) -> Any:
    """What the ONNX check allowed: its scaled ``tolerance``; records written before it existed have ``atol`` only."""
    return check.get("tolerance", check.get("atol"))


def deploy_lines(run_info: Mapping[str, Any]) -> list[Block]:
    """Where the winner's checked bundle is, or how to make it."""
    export = _mapping(run_info.get("export"))
    if export:
        check = _mapping(export.get("check"))
        verdict = "passed" if check.get("passed") else "FAILED"
        items = [
            f"ONNX file: {export.get('onnx')} (ONNX Runtime check {verdict}: outputs within "
            f"{_cell(_parity_bound(check))} of PyTorch on {check.get('batch_size')} validation images)",
            f"bundle record: {export.get('bundle_json', '?')} (input size, mean/std, class names, architecture, "
            "space and layout; the same as ONNX metadata)",
            f"architecture: {export.get('arch_json', '?')} ('nas profile --arch FILE' rebuilds it)",
        ]
        return [Heading(3, "Deploy it"), Bullets(tuple(items))]
    if run_info.get("not_exported") is not None:
        trial = run_info["not_exported"]
        return [Para(f"Trial {trial} has not been exported: 'nas export --run RUN --trial {trial}' writes its ONNX "
                     "bundle, and the next 'nas report' adds its profile and guideline audit.")]
    return []


def _profile_rows(profile: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str]] = []
    for key, unit, scale in (("params", "M", 1e6), ("mult_adds", "M", 1e6), ("elementwise_ops", "M", 1e6),
                             ("memory_access_bytes", "MB", 1e6)):
        if isinstance(profile.get(key), numbers.Real):
            rows.append((key, f"{profile[key] / scale:.4g} {unit}"))
    latency = _mapping(profile.get("latency_ms"))
    if latency:
        rows.append((
            "latency_ms",
            f"median {_cell(latency.get('median'))} (p10 {_cell(latency.get('p10'))}, p90 {_cell(latency.get('p90'))}), "
            f"{latency.get('backend', '?')} on {latency.get('device', '?')}, {latency.get('threads', '?')} thread(s), "
            f"batch {latency.get('batch_size', '?')}" + (", noisy" if latency.get("noisy") else ""),
        ))
    energy = _mapping(profile.get("energy_mj"))
    if energy:
        rows.append(("energy_mj", f"{_cell(energy.get('value'))} (source: {energy.get('source', '?')})"))
    return tuple(rows)


def _audit_summary(findings: list[Mapping[str, Any]]) -> list[Block]:
    warnings = [g for g in findings if g.get("severity") == "warning"]
    counts: dict[str, dict[str, int]] = {}
    for g in findings:
        counts.setdefault(str(g.get("guideline", "?")), {}).setdefault(str(g.get("severity", "info")), 0)
        counts[str(g.get("guideline", "?"))][str(g.get("severity", "info"))] += 1
    per_guideline = "; ".join(
        f"{name}: " + ", ".join(f"{n} {sev}" for sev, n in sorted(sev_counts.items(), key=lambda kv: kv[0] != "warning"))
        for name, sev_counts in sorted(counts.items())
    )
    blocks: list[Block] = [Para(f"{len(findings)} findings, {len(warnings)} of them warnings ({per_guideline}).")]
    if warnings:
        listed = tuple(f"[{g.get('guideline')}] {g.get('name', '')}: {g.get('message', '')}".replace(" : ", ": ")
                       for g in warnings[:_MAX_LISTED])
        blocks += [Para("Warnings, which are worth a look:"), Bullets(listed)]
        if len(warnings) > _MAX_LISTED:
            blocks.append(Para(f"{len(warnings) - _MAX_LISTED} more warning(s) are in the full table."))
    else:
        blocks.append(Para("No warnings: the network follows the guidelines audited."))
    ordered = sorted(findings, key=lambda g: g.get("severity") != "warning")[:_MAX_FINDINGS]
    header = tuple(c for c in _FINDING_COLUMNS if any(c in g for g in findings))
    rows = tuple(tuple(_cell(g.get(k, "")) for k in header) for g in ordered)
    blocks.append(Details(f"All {len(findings)} findings (warnings first)", (Table(header, rows),)))
    return blocks


def profile_section(
    profile: Mapping[str, Any], winner_arch_id: str | None, latency_table: Any = None
) -> list[Block]:
    """The selected candidate's profile (``Profile.to_dict()``) and its guideline audit, summarised."""
    blocks: list[Block] = [Heading(2, "Profile and guideline audit of the winner")]
    profiled_id = profile.get("arch_id")
    if winner_arch_id is not None and profiled_id and profiled_id != winner_arch_id:
        return [*blocks, Para(f"The profile on record is of arch {profiled_id}, not of the winner ({winner_arch_id}); "
                              "export the winner to profile it.")]
    rows = _profile_rows(profile)
    if rows:
        blocks.append(Table(("measured on the exported network", "value"), rows))
    table = _mapping(latency_table)
    if isinstance(table.get("winner_predicted_ms"), numbers.Real):
        blocks.append(Para(
            f"The run's latency table predicts {table['winner_predicted_ms']:.4g} ms for it "
            f"({_percent(table.get('winner_relative_error'))} against the measurement, {table.get('entries')} blocks)."
        ))
    findings = [g for g in profile.get("guidelines") or [] if isinstance(g, Mapping)]
    blocks.append(Heading(3, "Guideline audit (ShuffleNetV2 G1-G4, VoVNet)"))
    if findings:
        blocks += _audit_summary(findings)
    elif profile.get("guidelines_audited") is False:
        blocks.append(Para("The guideline audit was not run for this profile."))
    else:
        blocks.append(Para("The guideline audit found nothing to report."))
    return blocks


def _latency_rows(latency: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    rows = []
    for key, result in latency.items():
        if not isinstance(result, Mapping):
            continue
        rows.append(
            (
                str(key),
                str(result.get("backend", "")),
                str(result.get("batch_size", "")),
                _cell(result.get("median_ms", "")),
                _cell(result.get("p10_ms", "")),
                _cell(result.get("p90_ms", "")),
                str(result.get("threads", "")),
                "yes" if result.get("noisy") else "no",
            )
        )
    return tuple(rows)


def export_section(export: Mapping[str, Any]) -> list[Block]:
    """The ONNX export of the winner: file, exporter, parity and accuracy in ONNX Runtime, latency of both."""
    blocks: list[Block] = [Heading(2, "ONNX export")]
    info = _mapping(export.get("export"))
    check = _mapping(export.get("check"))
    items = []
    if export.get("onnx"):
        items.append(f"file: {export['onnx']}")
    if "trial" in export or "arch_id" in export:
        items.append(f"candidate: trial {export.get('trial', '?')} (arch {export.get('arch_id', '?')})")
    if info:
        exporter = str(info.get("exporter", "?"))
        if info.get("dynamo_error"):
            exporter += f" (the dynamo exporter failed: {info['dynamo_error']})"
        items.append(f"exporter: {exporter}, opset {info.get('opset', '?')}")
        shapes = [f"{k} ({', '.join(map(str, info[k]))})" for k in ("input_shape", "output_shape") if info.get(k)]
        if shapes:
            items.append(", ".join(s.replace("_shape", " shape") for s in shapes))
        if isinstance(info.get("file_bytes"), numbers.Real):
            items.append(f"file size: {info['file_bytes'] / 1e6:.3g} MB (weights inside, one file)")
    if check:
        verdict = "passed" if check.get("passed") else "FAILED"
        items.append(
            f"ONNX Runtime check {verdict}: max |ONNX - PyTorch| = {_cell(check.get('max_abs_diff'))} on "
            f"{check.get('batch_size')} samples, {_cell(check.get('max_abs_diff_batch1'))} at batch 1 "
            f"(allowed {_cell(_parity_bound(check))})"
        )
        if check.get("accuracy_torch") is not None:
            items.append(
                f"accuracy on the check batch: PyTorch {_cell(check.get('accuracy_torch'))}, "
                f"ONNX Runtime {_cell(check.get('accuracy_onnx'))}"
            )
    blocks.append(Bullets(tuple(items)) if items else Para("The export record has no details."))
    rows = _latency_rows(_mapping(check.get("latency")))
    if rows:
        header = ("measurement", "backend", "batch", "median (ms)", "p10 (ms)", "p90 (ms)", "threads", "noisy")
        blocks += [Heading(3, "Latency: ONNX Runtime and PyTorch"), Table(header, rows)]
    return blocks


def _key_value_table(data: Mapping[str, Any], header: tuple[str, str]) -> Table:
    def shown(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"

    return Table(header, tuple((str(k), shown(v)) for k, v in data.items()))


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, numbers.Real) or not math.isfinite(float(seconds)):
        return str(seconds)
    total = float(seconds)
    minutes, secs = divmod(total, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{total:.2f} s" + (f" ({hours}:{minutes:02d}:{secs:05.2f})" if total >= 60 else "")


def run_section(run_info: Mapping[str, Any]) -> list[Block]:
    """Device, library versions (those of this process when the run recorded none), timings, configuration."""
    blocks: list[Block] = [Heading(2, "Run")]
    if isinstance(run_info.get("device"), Mapping) and run_info["device"]:
        blocks += [Heading(3, "Device"), _key_value_table(run_info["device"], ("key", "value"))]
    versions = run_info.get("versions")
    if isinstance(versions, Mapping) and versions:
        blocks += [Heading(3, "Library versions"), _key_value_table(versions, ("library", "version"))]
    else:
        blocks += [Heading(3, "Library versions (when this report was written)")]
        blocks.append(_key_value_table(library_versions(), ("library", "version")))
    timings = run_info.get("timings")
    if isinstance(timings, Mapping) and timings:
        rows = tuple((str(k), _duration(v)) for k, v in timings.items())
        blocks += [Heading(3, "Timings"), Table(("phase", "time"), rows)]
    if run_info.get("config"):
        plain = json.loads(json.dumps(run_info["config"], default=str))
        blocks.append(Details("Configuration (config.yaml)", (Code(yaml.safe_dump(plain, sort_keys=False), "yaml"),)))
    others = {k: v for k, v in run_info.items() if k not in RUN_INFO_KEYS}
    if others:
        blocks += [Heading(3, "Other run information"), _key_value_table(others, ("key", "value"))]
    return blocks
