"""The search report: budgets, selection, Pareto fronts, and the files written (Markdown, HTML, PNG plots)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from matplotlib.image import imread

from nas.report.report import (
    PLOT_COSTS,
    library_versions,
    meets_budgets,
    pareto_front,
    pareto_set,
    parse_budgets,
    select_best,
    write_report,
)
from nas.search.records import CandidateRecord

if TYPE_CHECKING:
    from pathlib import Path

_FAILED = (5, 17)
_RUNNING = (23,)


def _records(n: int = 30, seed: int = 0) -> list[CandidateRecord]:
    """Synthetic candidates: bigger networks are slower and (noisily) more accurate; two failed, one running."""
    rng = np.random.default_rng(seed)
    records = []
    for trial in range(n):
        mult_adds = float(rng.uniform(1e6, 5e7))
        latency = mult_adds / 1e7 * float(rng.uniform(0.8, 1.2))
        accuracy = 0.70 + 0.25 * math.log(mult_adds / 1e6) / math.log(50.0) + float(rng.normal(0.0, 0.02))
        record = CandidateRecord(
            trial=trial,
            arch_id=f"{rng.integers(0, 2**48):012x}",
            arch={"space": "shufflenet", "values": {"block_0": int(rng.integers(0, 4)), "width": 0.5}},
            status="COMPLETE",
            worker=f"w{trial % 2}",
            duration_s=float(rng.uniform(1, 3)),
            accuracy=min(accuracy, 0.99),
            params=int(mult_adds / 40),
            mult_adds=int(mult_adds),
            elementwise_ops=int(mult_adds / 20),
            memory_access_bytes=int(mult_adds * 0.3),
            latency_ms=latency,
            latency_p10_ms=latency * 0.95,
            latency_p90_ms=latency * 1.08,
            latency_backend="eager",
            energy_mj=latency * 2.0 * float(rng.uniform(0.9, 1.1)),
            energy_source="model",
        )
        if trial in _FAILED:
            record = replace(record, status="FAIL", accuracy=math.nan, error="RuntimeError: <boom> out of memory")
        elif trial in _RUNNING:
            record = replace(record, status="RUNNING", accuracy=math.nan)
        records.append(record)
    return records


def _competing(records: list[CandidateRecord]) -> list[CandidateRecord]:
    return [r for r in records if r.status == "COMPLETE" and math.isfinite(r.accuracy)]


def _section(markdown: str, heading: str) -> str:
    """The text of the section starting at ``heading`` up to the next heading of the same or a higher level."""
    start = markdown.index(heading)
    level = heading.split(" ", 1)[0]
    rest = markdown[start + len(heading) :]
    match = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: match.start()] if match else rest


_RUN_INFO = {
    "config": {"name": "unit-run", "seed": 0, "search": {"trials": 30, "sampler": "nsga2"}},
    "device": {"device": "cpu", "device_name": "test cpu", "threads": 1},
    "versions": {"torch": "2.13.0", "python": "3.11"},
    "timings": {"supernet_training": 125.5, "search": 42.0},
    "winner_profile": {
        "arch_id": "ignored-here",
        "params": 1234,
        "guidelines": [
            {
                "guideline": "G1",
                "scope": "layer",
                "name": "stage2.0.conv1",
                "severity": "warning",
                "message": "unequal channel widths in 3 convolutions",
                "figures": {"ratio": 2.0},
            }
        ],
        "guidelines_audited": True,
    },
    "export": {
        "trial": 7,
        "arch_id": "d5282ab7608c",
        "onnx": "export/trial7.onnx",
        "export": {"exporter": "dynamo", "dynamo_error": "", "opset": 18, "input_shape": ["batch", 1, 16, 16]},
        "check": {
            "passed": True,
            "max_abs_diff": 2.1e-6,
            "max_abs_diff_batch1": 1.9e-6,
            "atol": 1e-4,
            "batch_size": 256,
            "accuracy_torch": 0.9375,
            "accuracy_onnx": 0.9375,
            "latency": {
                "onnxruntime_batch1": {"backend": "onnxruntime", "batch_size": 1, "median_ms": 0.21, "threads": 1},
                "eager_batch1": {"backend": "eager", "batch_size": 1, "median_ms": 0.93, "threads": 1},
            },
        },
    },
    "objectives": ["accuracy", "latency_ms"],
    "engine": "optuna",
    "sampler": "nsga2",
    "ray_address": "local",
}


# --------------------------------------------------------------------------------------------------
# parse_budgets
# --------------------------------------------------------------------------------------------------
def test_parse_budgets_converts_units() -> None:
    budgets = parse_budgets(max_latency_ms=2.5, max_energy_mj=None, max_memory_access_mb=1.5, params=2e6)
    assert budgets == {"latency_ms": 2.5, "memory_access_bytes": 1.5e6, "params": 2e6}
    assert parse_budgets() == {}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_latency_ms": -1.0}, ["max_latency_ms", ">= 0"]),
        ({"max_energy_mj": math.nan}, ["max_energy_mj", ">= 0"]),
        ({"max_memory_access_mb": "3"}, ["max_memory_access_mb", "number"]),
        ({"max_latency_ms": True}, ["max_latency_ms", "number"]),
        ({"accuracy": 0.5}, ["'accuracy'", "max_latency_ms", "mult_adds"]),
        ({"max_flops": 1.0}, ["'max_flops'", "allowed"]),
        ({"params": -3}, ["params", ">= 0"]),
        ({"max_latency_ms": 1.0, "latency_ms": 2.0}, ["latency_ms", "twice"]),
    ],
)
def test_parse_budgets_rejects_bad_input(kwargs: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_budgets(**kwargs)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value)


# --------------------------------------------------------------------------------------------------
# selection and Pareto fronts
# --------------------------------------------------------------------------------------------------
def test_select_best_matches_brute_force() -> None:
    records = _records()
    budgets = {"latency_ms": 2.0, "energy_mj": 3.5}
    eligible = [r for r in _competing(records) if r.latency_ms <= 2.0 and r.energy_mj <= 3.5]
    assert eligible, "the fixture must leave someone within these budgets"
    best = select_best(records, budgets)
    assert best is not None
    assert best.accuracy == max(r.accuracy for r in eligible)
    assert best.trial not in _FAILED + _RUNNING
    unconstrained = select_best(records, {})
    assert unconstrained is not None
    assert unconstrained.accuracy == max(r.accuracy for r in _competing(records))
    assert select_best(records, {"latency_ms": 1e-6}) is None


def test_unknown_metric_value_does_not_meet_a_budget() -> None:
    record = _records()[0]
    assert meets_budgets(record, {"energy_mj": 1e9})
    assert not meets_budgets(replace(record, energy_mj=math.nan), {"energy_mj": 1e9})
    assert select_best([replace(record, energy_mj=math.nan)], {"energy_mj": 1e9}) is None
    with pytest.raises(ValueError, match="unknown budget metric 'accuracy'"):
        select_best([record], {"accuracy": 0.5})


@pytest.mark.parametrize("cost", PLOT_COSTS)
def test_pareto_front_matches_brute_force(cost: str) -> None:
    records = _records()
    pool = _competing(records)

    def dominated(r: CandidateRecord) -> bool:
        rc = r.metrics()[cost]
        return any(
            o.accuracy >= r.accuracy and o.metrics()[cost] <= rc and (o.accuracy > r.accuracy or o.metrics()[cost] < rc)
            for o in pool
        )

    expected = {r.trial for r in pool if not dominated(r)}
    front = pareto_front(records, cost)
    assert {r.trial for r in front} == expected
    costs = [r.metrics()[cost] for r in front]
    assert costs == sorted(costs)
    assert [r.accuracy for r in front] == sorted(r.accuracy for r in front)  # up the staircase
    assert {r.trial for r in pareto_set(records, [cost])} == expected


def test_pareto_set_in_several_costs_contains_each_front() -> None:
    records = _records()
    both = {r.trial for r in pareto_set(records, ["latency_ms", "energy_mj"])}
    assert {r.trial for r in pareto_front(records, "latency_ms")} <= both
    assert {r.trial for r in pareto_front(records, "energy_mj")} <= both
    with pytest.raises(ValueError, match="unknown cost metric 'speed'"):
        pareto_front(records, "speed")


def test_library_versions_names_the_stack() -> None:
    versions = library_versions()
    for name in ("python", "torch", "numpy", "onnx", "onnxruntime", "optuna"):
        assert versions[name]


# --------------------------------------------------------------------------------------------------
# the report files
# --------------------------------------------------------------------------------------------------
def test_write_report_files_and_winner(tmp_path: Path) -> None:
    records = _records()
    budgets = parse_budgets(max_latency_ms=2.0, max_energy_mj=3.5)
    paths = write_report(tmp_path, records, budgets=budgets, run_info=_RUN_INFO)

    assert paths.markdown == tmp_path / "report.md"
    assert paths.html == tmp_path / "report.html"
    assert set(paths.plots) == set(PLOT_COSTS)
    assert paths.skipped_plots == ()
    for cost, png in paths.plots.items():
        assert png == tmp_path / f"pareto_{cost}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 15_000
        pixels = imread(png)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500
        assert float(np.std(pixels[..., :3])) > 0.05  # not a blank canvas

    markdown = paths.markdown.read_text()
    winner = select_best(records, budgets)
    assert winner is not None
    assert markdown.index("## Winner") < markdown.index("## Budgets") < markdown.index("## Pareto fronts")
    section = _section(markdown, f"## Winner: trial {winner.trial}")
    assert f"trial {winner.trial} (arch {winner.arch_id})" in section
    assert '"block_0"' in section  # the architecture as JSON
    best = select_best(records, {})
    assert best is not None
    if best.trial != winner.trial:
        expected_points = f"{100 * (winner.accuracy - best.accuracy):+.2f} points"
        assert expected_points in section
        assert "latency_ms" in section and "×" in section

    alone = _section(markdown, "### Best under each budget alone")
    for metric, bound in budgets.items():
        one = select_best(records, {metric: bound})
        assert one is not None and one.arch_id in alone

    summary = _section(markdown, "## Summary")
    assert "trials: 30" in summary
    assert "failed: 2" in summary
    assert "running: 1" in summary
    assert f"Pareto front on accuracy and latency_ms: {len(pareto_front(records, 'latency_ms'))}" in summary

    top = _section(markdown, "## Top 10 candidates by accuracy")
    table_rows = [line for line in top.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(table_rows) == 10
    assert table_rows[0].startswith(f"| 1 | {best.trial} | {best.arch_id} |")

    failed = _section(markdown, "## Failed trials")
    assert "2 trial(s) failed" in failed
    assert "RuntimeError: \\<boom> out of memory" in failed  # Markdown would read <boom> as an HTML tag

    profile = _section(markdown, "## Profile and guideline audit of the winner")
    export = _section(markdown, "## ONNX export")
    assert "exporter: dynamo, opset 18" in export
    assert "input shape (batch, 1, 16, 16)" in export
    assert "ONNX Runtime check passed: max |ONNX - PyTorch| = 2.1e-06 on 256 samples" in export
    assert "| onnxruntime_batch1 | onnxruntime | 1 | 0.21 |" in export
    assert "not of the winner" in profile and "G1" not in profile  # a profile of another arch is not shown
    run = _section(markdown, "## Run")
    assert "nsga2" in run and "unit-run" in run and "2.13.0" in run
    assert "125.50 s (0:02:05.50)" in run
    assert "ray_address" in run

    html = paths.html.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('<img alt="accuracy against') == 0  # interactive plots instead
    assert html.count("Plotly.newPlot") == len(PLOT_COSTS)
    assert html.count("plotly.js v") == 1  # the library inlined once, no network needed
    assert "<script src=" not in html
    assert "<style>" in html
    assert winner.arch_id in html
    assert "&lt;boom&gt;" in html and "<boom>" not in html  # text is escaped


def test_budget_nobody_meets_names_the_cheapest(tmp_path: Path) -> None:
    records = _records()
    pool = _competing(records)
    cheapest = min(pool, key=lambda r: r.latency_ms)
    budgets = parse_budgets(max_latency_ms=0.001)
    paths = write_report(tmp_path, records, budgets=budgets, run_info={})
    markdown = paths.markdown.read_text()
    section = _section(markdown, "## Winner: none within the budgets")
    assert "No candidate meets all budgets at once (latency_ms ≤ 0.001 ms)" in section
    assert "No candidate meets latency_ms ≤ 0.001 ms. The cheapest candidate found on latency_ms is" in section
    assert f"trial {cheapest.trial} (arch {cheapest.arch_id})" in section
    assert "The export and audit below are of the most accurate candidate" in section
    assert "| latency_ms | 0.001 ms | 0 of 27 |" in markdown
    assert "Library versions (when this report was written)" in markdown


def test_one_budget_met_by_nobody_among_two(tmp_path: Path) -> None:
    records = _records()
    pool = _competing(records)
    cheapest_memory = min(pool, key=lambda r: r.memory_access_bytes)
    budgets = parse_budgets(max_latency_ms=3.0, max_memory_access_mb=0.01)
    markdown = write_report(tmp_path, records, budgets=budgets, run_info={}).markdown.read_text()
    alone = _section(markdown, "### Best under each budget alone")
    alone = _section(markdown, "### Best under each budget alone")
    best_latency = select_best(records, {"latency_ms": 3.0})
    assert best_latency is not None
    assert f"latency_ms ≤ 3 ms: trial {best_latency.trial} (arch {best_latency.arch_id})" in alone
    memory_part = alone[alone.index("No candidate meets memory_access_bytes ≤ 0.01 MB") :]
    assert cheapest_memory.arch_id in memory_part.split("\n\n")[0]


def test_all_nan_metric_skips_its_plot(tmp_path: Path) -> None:
    records = [replace(r, energy_mj=math.nan, energy_source="") for r in _records()]
    records[3] = replace(records[3], latency_ms=math.nan)
    paths = write_report(tmp_path, records, budgets={}, run_info={"objectives": ["accuracy", "latency_ms"]})
    assert paths.skipped_plots == ("energy_mj",)
    assert "energy_mj" not in paths.plots
    assert not (tmp_path / "pareto_energy_mj.png").exists()
    markdown = paths.markdown.read_text()
    energy = _section(markdown, "### Accuracy against energy_mj")
    assert "No plot: no competing candidate has a measured energy_mj (all values are NaN)." in energy
    latency = _section(markdown, "### Accuracy against latency_ms")
    assert "1 candidate(s) have no measured latency_ms and are not drawn." in latency
    assert "No budgets were set" in markdown and "no candidate is marked over budget" in markdown
    best = select_best(records, {})
    assert best is not None
    assert f"trial {best.trial} (arch {best.arch_id})" in _section(markdown, f"## Winner: trial {best.trial}")
    assert paths.html.read_text().count("Plotly.newPlot") == len(PLOT_COSTS) - 1


def test_report_with_no_competitor(tmp_path: Path) -> None:
    records = [replace(r, status="FAIL", accuracy=math.nan) for r in _records(4)]
    paths = write_report(tmp_path, records, budgets={"latency_ms": 1.0}, run_info={})
    markdown = paths.markdown.read_text()
    assert "failed: 4" in markdown
    assert "No candidate completed with an accuracy" in markdown
    assert paths.plots == {}
    assert set(paths.skipped_plots) == set(PLOT_COSTS)


def test_write_report_rejects_bad_budgets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown budget metric 'max_latency_ms'"):
        write_report(tmp_path, _records(3), budgets={"max_latency_ms": 1.0}, run_info={})
    with pytest.raises(ValueError, match="latency_ms must be a number >= 0"):
        write_report(tmp_path, _records(3), budgets={"latency_ms": -2.0}, run_info={})


def test_audit_is_summarised_warnings_first_full_table_collapsed(tmp_path: Path) -> None:
    records = _records()
    winner = select_best(records, {})
    assert winner is not None
    findings = [
        {"guideline": "G2", "scope": "layer", "name": f"conv{i}", "severity": "info", "message": f"group conv {i}"}
        for i in range(30)
    ] + [{"guideline": "VoVNet", "scope": "block", "name": "stage3", "severity": "warning", "message": "long residual chain"}]
    profile = {"arch_id": winner.arch_id, "params": 5000, "guidelines": findings, "guidelines_audited": True,
               "latency_ms": {"median": 1.2, "p10": 1.1, "p90": 1.4, "backend": "eager", "device": "cpu", "threads": 1}}
    paths = write_report(tmp_path, records, budgets={}, run_info={"winner_profile": profile})
    markdown = paths.markdown.read_text()
    audit = _section(markdown, "## Profile and guideline audit of the winner")
    assert "31 findings, 1 of them warnings" in audit
    assert audit.index("[VoVNet] stage3: long residual chain") < audit.index("| G2 |")  # what matters first
    assert "median 1.2 (p10 1.1, p90 1.4), eager on cpu" in audit
    assert markdown.count("```json") == 1  # the architecture alone is JSON (collapsed in the HTML); no profile dump
    html = paths.html.read_text()
    assert html.count("<details>") >= 2 and "All 31 findings (warnings first)" in html


def test_only_budgets_that_were_set_mark_points_over_budget(tmp_path: Path) -> None:
    records = [replace(r, feasible=False) for r in _records()]  # the search's own verdict plays no part
    html = write_report(tmp_path / "none", records, budgets={}, run_info={}).html.read_text()
    assert "over budget" not in html.split("<h2>Pareto fronts</h2>")[1].split("<h2>")[0].replace("marked over budget", "")
    budgets = parse_budgets(max_latency_ms=2.0)
    over = sum(1 for r in _competing(records) if r.latency_ms > 2.0)
    html = write_report(tmp_path / "latency", records, budgets=budgets, run_info={}).html.read_text()
    assert f"over budget (latency_ms \\u2264 2 ms) ({over})" in html  # the plot's legend, JSON-escaped
