"""Rank agreement figures: correlations with bootstrap intervals, seed ceiling, top-k, verdicts, the spread pick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.core.errors import UsageError
from nas.ranking.analysis import analyse
from nas.ranking.plan import RankedArch, pick_spread, task_key
from nas.ranking.stats import Correlation, correlate, seed_ceiling, top_k_overlap, verdict
from nas.search.records import CandidateRecord


def test_same_order_gives_tau_one_and_reversed_minus_one() -> None:
    x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    same = correlate(x, [v * 2 + 1 for v in x])
    assert same["kendall_tau"].value == pytest.approx(1.0) and same["spearman_rho"].value == pytest.approx(1.0)
    assert same["kendall_tau"].low == pytest.approx(1.0)
    reverse = correlate(x, x[::-1])["kendall_tau"]
    assert reverse.value == pytest.approx(-1.0) and reverse.high == pytest.approx(-1.0)


def test_a_noisy_order_has_an_interval_around_its_value() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(12, dtype=float)
    tau = correlate(x, x + rng.normal(0, 3, 12))["kendall_tau"]
    assert tau.low < tau.value < tau.high and tau.low >= -1 and tau.high <= 1 and tau.n == 12


def test_two_points_have_no_interval() -> None:
    tau = correlate([1.0, 2.0], [3.0, 4.0])["kendall_tau"]
    assert tau.value == pytest.approx(1.0) and math.isnan(tau.low)
    assert verdict(tau, None)[0] == "unknown"


def test_seed_ceiling_and_top_k() -> None:
    per_seed = np.array([[0.1, 0.1], [0.2, 0.3], [0.3, 0.2], [0.4, 0.4], [0.5, 0.5]])
    ceiling = seed_ceiling(per_seed)
    assert ceiling is not None and ceiling.value == pytest.approx(0.8)
    assert seed_ceiling(per_seed[:, :1]) is None
    assert top_k_overlap([5, 4, 3, 2, 1], [1, 2, 3, 5, 4], 2) == pytest.approx(0.0)
    assert top_k_overlap([5, 4, 3, 2, 1], [4, 5, 1, 2, 3], 2) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("tau", "ceiling", "expected"),
    [
        (Correlation(0.8, 0.5, 1.0, 8), Correlation(0.9, 0.7, 1.0, 8), "trusted"),
        (Correlation(0.4, 0.1, 0.7, 8), Correlation(0.9, 0.7, 1.0, 8), "partly"),
        (Correlation(0.1, -0.4, 0.6, 8), Correlation(0.9, 0.7, 1.0, 8), "not trusted"),
        (Correlation(0.1, -0.4, 0.6, 8), Correlation(-0.2, -0.6, 0.3, 8), "not trusted"),
    ],
)
def test_verdicts(tau: Correlation, ceiling: Correlation, expected: str) -> None:
    label, reason = verdict(tau, ceiling)
    assert label == expected and reason


def test_an_order_reversed_beyond_chance_is_not_said_to_include_zero() -> None:
    """Seen on a default run's quick check: 4 architectures in exactly the reverse order give tau -1 [-1, -1]."""
    label, reason = verdict(Correlation(-1.0, -1.0, -1.0, 4), None)
    assert label == "not trusted" and "interval below 0" in reason and "includes 0" not in reason
    label, reason = verdict(Correlation(-0.2, -0.8, 0.4, 8), None)
    assert label == "not trusted" and "interval includes 0" in reason


def _record(trial: int, accuracy: float) -> CandidateRecord:
    return CandidateRecord.from_dict({"trial": trial, "arch_id": f"a{trial}", "arch": {}, "accuracy": accuracy, "status": "COMPLETE"})


def test_pick_spread_takes_both_ends_and_the_winner() -> None:
    records = [_record(t, 0.5 + t / 100) for t in range(20)]
    picked = pick_spread(records, 4, winner_trial=10)
    trials = [r.trial for r in picked]
    assert 19 in trials and 0 in trials and 10 in trials and len(set(trials)) == 4
    assert [r.trial for r in pick_spread(records[:3], 8, None)] == [2, 1, 0]
    with pytest.raises(UsageError):
        pick_spread(records, 1, None)


def test_analyse_uses_only_finished_architectures() -> None:
    archs = [RankedArch(t, f"a{t}", {}, 0.5 + t / 10, 0.4 + t / 10, t == 2) for t in range(4)]
    accuracies = {task_key(f"a{t}", s, 3): 0.6 + t / 10 + s / 100 for t in range(3) for s in range(2)}
    result = analyse(archs, accuracies, seeds=2, epochs=3)
    assert len(result["archs"]) == 3 and result["complete"] is False
    assert result["kendall_tau"]["value"] == pytest.approx(1.0) and result["winner_standalone_rank"] == 1
    assert result["seed_ceiling"]["value"] == pytest.approx(1.0)


def test_standalone_accuracies_that_do_not_separate_give_no_verdict() -> None:
    archs = [RankedArch(t, f"a{t}", {}, 0.5 + t / 10, 0.4, False) for t in range(4)]
    result = analyse(archs, {task_key(f"a{t}", 0, 1): 0.1 for t in range(4)}, seeds=1, epochs=1)
    assert result["verdict"] == "unknown" and "does not separate" in result["reason"]
