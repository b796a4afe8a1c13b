"""Issue 13: budgets (absolute, relative, with confidence), accuracy intervals, paired tests, the timing protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nas.core.budgets import Budget, budget_value, normalise_budgets, parse_budget, resolve_budgets, too_close
from nas.core.config import ConfigError, default_config, merge_config
from nas.core.stats import decode_correct, encode_correct, images_needed, paired_test, wilson_interval
from nas.report.report import write_report
from nas.report.selection import check_budgets, select_best
from nas.search.records import CandidateRecord, read_trials_csv, write_trials_csv
from profilers.timing import (
    QUANTILE_LEVELS,
    collect_samples,
    latency_from_samples,
    median_ci,
    prob_at_most,
    quantile_at,
)


def _record(trial: int, accuracy: float, latency: float, correct: np.ndarray | None = None, spread: float = 0.02) -> CandidateRecord:
    quantiles = [latency * (1 + spread * (q - 50) / 50) for q in QUANTILE_LEVELS]
    bits = correct if correct is not None else np.zeros(0, dtype=bool)
    return CandidateRecord(
        trial=trial,
        arch_id=f"a{trial}",
        arch={"x": trial},
        status="COMPLETE",
        accuracy=accuracy,
        latency_ms=latency,
        latency_p10_ms=quantiles[2],
        latency_p90_ms=quantiles[18],
        latency_quantiles=quantiles,
        latency_ci_low_ms=latency * 0.99,
        latency_ci_high_ms=latency * 1.01,
        latency_backend="onnxruntime",
        val_images=int(bits.size),
        val_correct=encode_correct(bits),
    )


# --- budgets ------------------------------------------------------------------------------------


def test_budget_syntax_absolute_relative_and_confidence() -> None:
    assert parse_budget("latency_ms", 1.1).value == 1.1
    spec = parse_budget("latency_ms", "60%")
    assert spec.relative and spec.share == pytest.approx(0.6)
    spec = parse_budget("latency_ms", {"max": 1.0, "confidence": 0.95})
    assert spec.value == 1.0 and spec.confidence == 0.95
    assert normalise_budgets({"latency_ms": {"max": "50%", "confidence": 0.9}}) == {
        "latency_ms": {"max": "50%", "confidence": 0.9}
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("fast", "not a number or a percentage"),
        ("0%", "above 0%"),
        (-1, "positive number"),
        ({"max": 1, "confidence": 1.0}, "probability in [0.5, 1)"),
        ({"confidence": 0.9}, "'max' (required)"),
        ({"max": 1, "level": 0.9}, "'max' (required) and 'confidence'"),
    ],
)
def test_bad_budgets_say_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_budget("latency_ms", raw)


def test_confidence_only_on_latency_and_relative_only_in_the_report() -> None:
    with pytest.raises(ValueError, match="only latency_ms"):
        parse_budget("params", {"max": 1e6, "confidence": 0.9})
    with pytest.raises(ConfigError, match=r"report\.budgets"):
        merge_config(default_config(), {"search": {"budgets": {"latency_ms": "60%"}}})
    cfg = merge_config(default_config(), {"search": {"budgets": {"latency_ms": {"max": 1.0, "confidence": 0.95}}}})
    assert cfg.search.budgets == {"latency_ms": {"max": 1.0, "confidence": 0.95}}


def test_default_report_budget_is_relative_and_the_search_uses_onnxruntime() -> None:
    cfg = default_config()
    assert cfg.report.budgets == {"latency_ms": "125% of fastest"}
    assert cfg.search.latency_backend == "onnxruntime"


def test_relative_budget_resolves_against_the_most_accurate_candidate() -> None:
    records = [_record(0, 0.95, 2.0), _record(1, 0.97, 1.0), _record(2, 0.93, 0.5), _record(3, 0.90, 0.4)]
    budgets = check_budgets({"latency_ms": "60%"}, records)
    bound = budgets["latency_ms"]
    assert isinstance(bound, Budget) and float(bound) == pytest.approx(0.6)
    assert bound.reference_trial == 1 and "60%" in bound.describe()
    best = select_best(records, {"latency_ms": "60%"})
    assert best is not None and best.trial == 2


def test_confidence_budget_reads_the_latency_quantile() -> None:
    record = _record(0, 0.9, 1.0, spread=0.2)  # quantiles 0.8 .. 1.2
    assert budget_value(record.budget_metrics(), "latency_ms") == 1.0
    assert budget_value(record.budget_metrics(), "latency_ms", 0.95) == pytest.approx(1.18)
    assert select_best([record], {"latency_ms": 1.1}) is not None
    assert select_best([record], {"latency_ms": {"max": 1.1, "confidence": 0.95}}) is None
    assert too_close(1.02, 1.0) and not too_close(1.2, 1.0)


def test_relative_to_the_fastest_is_always_met_by_someone() -> None:
    records = [_record(0, 0.95, 2.0), _record(1, 0.97, 1.0), _record(2, 0.93, 0.5), _record(3, 0.90, 0.45)]
    bound = check_budgets({"latency_ms": "125% of fastest"}, records)["latency_ms"]
    assert float(bound) == pytest.approx(0.5625) and bound.reference_trial == 3
    assert "lowest of any candidate" in bound.describe()
    best = select_best(records, {"latency_ms": "125% of fastest"})
    assert best is not None and best.trial == 2
    with pytest.raises(ValueError, match="unknown reference"):
        parse_budget("latency_ms", "50% of slowest")


def test_resolved_budget_without_candidates_is_met_by_nobody() -> None:
    bound = resolve_budgets({"latency_ms": "60%"}, [])["latency_ms"]
    assert math.isnan(bound)


# --- statistics ---------------------------------------------------------------------------------


def test_wilson_interval_matches_the_formula() -> None:
    low, high = wilson_interval(500, 539)
    p, n, z = 500 / 539, 539, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert low == pytest.approx(centre - half, rel=1e-9) and high == pytest.approx(centre + half, rel=1e-9)


def test_correctness_bits_round_trip() -> None:
    rng = np.random.default_rng(0)
    bits = rng.random(539) < 0.9
    text = encode_correct(bits)
    assert len(text) == 2 * ((539 + 7) // 8)
    assert np.array_equal(decode_correct(text, 539), bits)
    with pytest.raises(ValueError):
        decode_correct(text, 900)


def test_paired_test_counts_disagreements_and_needs_more_images_when_close() -> None:
    first = np.array([True] * 90 + [False] * 10)
    second = first.copy()
    second[:3] = False  # only the first gets 3 images right
    second[95:] = True  # only the second gets 5 right... of the ten the first misses
    test = paired_test(first, second)
    assert (test.only_first, test.only_second) == (3, 5)
    assert not test.significant()
    needed = images_needed(test)
    assert needed is not None and needed > 100
    clear = paired_test(np.ones(200, dtype=bool), np.array([True] * 170 + [False] * 30))
    assert clear.significant() and images_needed(clear) == 200
    assert images_needed(paired_test(first, first)) is None


# --- timing protocol ----------------------------------------------------------------------------


def test_median_interval_and_quantile_helpers() -> None:
    ordered = [float(v) for v in range(1, 101)]
    low, high = median_ci(ordered)
    assert low < 50.5 < high and high - low < 25
    quantiles = [float(q) for q in QUANTILE_LEVELS]  # latency == level
    assert prob_at_most(quantiles, 50.0) == pytest.approx(0.5)
    assert prob_at_most(quantiles, -1.0) == 0.0 and prob_at_most(quantiles, 100.0) == 1.0
    assert quantile_at(quantiles, 0.95) == pytest.approx(95.0)


def test_protocol_stops_when_the_interval_is_tight_and_records_itself() -> None:
    calls = []

    def run_block(k: int) -> float:
        calls.append(k)
        return 1.0 * k  # perfectly steady: 1 ms per run

    samples, block = collect_samples(
        run_block, warmup=1, warmup_time_s=0.0, repeats=10, min_time_s=0.0, runs_per_sample=1,
        target_sample_s=0.001, ci_target=0.01, max_time_s=5.0,
    )  # fmt: skip
    assert 10 <= len(samples) < 30
    result = latency_from_samples(
        samples, runs_per_sample=block, warmup=1, device="cpu", device_name="cpu", backend="eager", threads=1,
        batch_size=1, dtype="float32", input_shape=(1,), settings={}, protocol={"ci_target": 0.01},
    )  # fmt: skip
    assert result.protocol["name"] == "median-ci" and result.protocol["converged"]
    assert len(result.quantiles_ms) == len(QUANTILE_LEVELS) and result.ci_low_ms == result.ci_high_ms == 1.0
    assert result.prob_at_most(1.0) == 1.0


# --- records and report -------------------------------------------------------------------------


def test_records_keep_quantiles_and_correctness_through_csv(tmp_path: Path) -> None:
    record = _record(3, 0.9, 0.05, np.array([True, False, True]))
    write_trials_csv([record], tmp_path / "trials.csv")
    (back,) = read_trials_csv(tmp_path / "trials.csv")
    assert back.latency_quantiles == pytest.approx(record.latency_quantiles)
    assert back.val_correct == record.val_correct and back.val_images == 3
    assert back.latency_ci_low_ms == pytest.approx(record.latency_ci_low_ms)


def test_report_says_when_the_winner_is_not_distinguishable(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = rng.random(539) < 0.95
    records = []
    for trial, latency in enumerate((1.0, 0.5, 0.45, 0.3)):
        bits = base.copy()
        flip = rng.choice(539, size=4, replace=False)
        bits[flip] = ~bits[flip]
        records.append(_record(trial, float(bits.mean()), latency, bits))
    records[0].accuracy = max(r.accuracy for r in records) + 0.001  # the most accurate is the slowest
    paths = write_report(tmp_path, records, budgets={"latency_ms": "60%"}, run_info={})
    text = paths.markdown.read_text()
    assert "95 % CI" in text
    assert "NOT distinguishable" in text
    assert "60% of the most accurate candidate's" in text
    assert "The search measured latency on: onnxruntime" in text
