"""Report sections about the run rather than the candidates: the winner's profile and guideline audit, its ONNX
export, and the run's device, library versions, timings and configuration.

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

from nas.report.markup import Block, Bullets, Code, Heading, Para, Table

__all__ = ["RUN_INFO_KEYS", "export_section", "library_versions", "profile_section", "run_section"]

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
)
_PACKAGES = ("torch", "optuna", "onnx", "onnxruntime", "onnxscript", "ray", "numpy", "matplotlib", "fvcore")
_FINDING_COLUMNS = ("guideline", "severity", "scope", "name", "message")
_MAX_FINDINGS = 60


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


def _cell(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def profile_section(profile: Mapping[str, Any], winner_arch_id: str | None) -> list[Block]:
    """The winner's profile (``profilers`` ``Profile.to_dict()`` or any mapping) with its guideline findings."""
    blocks: list[Block] = [Heading(2, "Winner's profile and guideline audit")]
    profiled_id = profile.get("arch_id")
    if winner_arch_id is not None and profiled_id and profiled_id != winner_arch_id:
        blocks.append(Para(f"This profile is of arch {profiled_id}, not of the winner above ({winner_arch_id})."))
    findings = [g for g in profile.get("guidelines") or [] if isinstance(g, Mapping)]
    if findings:
        seen = {k for g in findings for k in g}
        header = (
            *(c for c in _FINDING_COLUMNS if c in seen or c in ("guideline", "message")),
            *sorted(seen - set(_FINDING_COLUMNS)),
        )
        rows = tuple(tuple(_cell(g.get(k, "")) for k in header) for g in findings[:_MAX_FINDINGS])
        blocks.append(Table(header, rows))
        if len(findings) > _MAX_FINDINGS:
            blocks.append(Para(f"{len(findings) - _MAX_FINDINGS} more finding(s) are in the profile JSON."))
    elif profile.get("guidelines_audited") is False:
        blocks.append(Para("The guideline audit was not run for this profile."))
    elif "guidelines" in profile:
        blocks.append(Para("The guideline audit found nothing to report."))
    rest = {k: v for k, v in profile.items() if k != "guidelines"}
    if rest:
        blocks.append(Code(_json(rest), "json"))
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
            f"(allowed {_cell(check.get('atol'))})"
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
    rows = tuple((str(k), v if isinstance(v, str) else json.dumps(v, default=str)) for k, v in data.items())
    return Table(header, rows)


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
        blocks += [Heading(3, "Configuration"), Code(yaml.safe_dump(plain, sort_keys=False), "yaml")]
    others = {k: v for k, v in run_info.items() if k not in RUN_INFO_KEYS}
    if others:
        blocks += [Heading(3, "Other run information"), Code(_json(others), "json")]
    return blocks
