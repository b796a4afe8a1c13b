"""How sure the report is: accuracy intervals, the winner against its runners-up, latency against the budgets.

Blocks of :mod:`nas.report.markup` for :func:`nas.report.report.write_report`:

- every accuracy with its 95 % Wilson interval over the validation images (:func:`accuracy_text`);
- the winner compared with the runners-up *on the same validation images* (McNemar's exact test on the images
  exactly one of the two gets right, :mod:`nas.core.stats`), a plain sentence saying whether the winner can be
  told apart from them, and roughly how many validation images would tell it apart if it cannot;
- the latency the search used (backend), the winner's latency on both backends (the shipped ONNX file timed by
  ``nas export``'s check), and the candidates too close to a latency budget to call
  (:func:`nas.core.budgets.too_close`), with P(latency <= budget) from their timing quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas.core.budgets import CLOSE_CALL, budget_value, too_close
from nas.core.stats import decode_correct, images_needed, paired_test, wilson_interval
from nas.report.markup import Block, Bullets, Heading, Para, Table
from nas.report.selection import by_accuracy, meets_budgets

if TYPE_CHECKING:
    import numpy as np

    from nas.core.budgets import Budget
    from nas.core.stats import PairedTest
    from nas.search.records import CandidateRecord

__all__ = ["ALPHA", "RUNNERS_UP", "accuracy_interval", "accuracy_text", "uncertainty_sections"]

ALPHA = 0.05  # significance level of the paired tests
RUNNERS_UP = 5  # runners-up compared with the winner
_TOP = 10


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f} %" if math.isfinite(value) else "n/a"


def accuracy_interval(record: CandidateRecord) -> tuple[float, float] | None:
    """The 95 % Wilson interval of ``record``'s validation accuracy, or None when the image count is unknown."""
    if record.val_images <= 0 or not math.isfinite(record.accuracy):
        return None
    correct = round(record.accuracy * record.val_images)
    return wilson_interval(correct, record.val_images)


def accuracy_text(record: CandidateRecord) -> str:
    """``96.29 % (95 % CI 94.4-97.5 %, 539 images)``; the bare accuracy when the image count is unknown."""
    interval = accuracy_interval(record)
    if interval is None:
        return _pct(record.accuracy)
    low, high = interval
    return f"{_pct(record.accuracy)} (95 % CI {100 * low:.1f}-{100 * high:.1f} %, {record.val_images} images)"


def _correct(record: CandidateRecord) -> np.ndarray | None:
    if not record.val_correct or record.val_images <= 0:
        return None
    try:
        return decode_correct(record.val_correct, record.val_images)
    except ValueError:
        return None


def _who(record: CandidateRecord) -> str:
    return f"trial {record.trial}"


def _compare(winner: CandidateRecord, others: Sequence[CandidateRecord]) -> list[tuple[CandidateRecord, PairedTest]]:
    mine = _correct(winner)
    if mine is None:
        return []
    out = []
    for other in others:
        theirs = _correct(other)
        if theirs is not None and theirs.shape == mine.shape:
            out.append((other, paired_test(mine, theirs)))
    return out


def _verdict(test: PairedTest) -> str:
    if test.significant(ALPHA):
        return "better" if test.difference > 0 else "worse"
    return "not distinguishable"


def _needed_text(test: PairedTest) -> str:
    if test.significant(ALPHA):
        return "-"
    needed = images_needed(test, ALPHA)
    return "never (no net difference)" if needed is None else f"~{needed}"


def _runners_up(
    pool: Sequence[CandidateRecord], winner: CandidateRecord, budgets: Mapping[str, float]
) -> list[CandidateRecord]:
    """The most accurate other candidates within the budgets, then the most accurate overall if it is not one."""
    ranked = [r for r in by_accuracy(pool) if r.trial != winner.trial]
    within = [r for r in ranked if meets_budgets(r, budgets)][:RUNNERS_UP]
    if ranked and ranked[0] not in within and ranked[0].accuracy > winner.accuracy:
        within.append(ranked[0])
    return within


def _winner_blocks(
    pool: Sequence[CandidateRecord], winner: CandidateRecord, budgets: Mapping[str, float]
) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Accuracy: the winner against its runners-up")]
    blocks.append(Para(f"Winner {_who(winner)}: validation accuracy {accuracy_text(winner)}."))
    others = _runners_up(pool, winner, budgets)
    compared = _compare(winner, others)
    if not others:
        blocks.append(Para("No other candidate to compare it with."))
        return blocks
    if not compared:
        blocks.append(
            Para(
                "The records hold no per-image correctness (a run of an older version), so the winner cannot be "
                "compared with its runners-up image by image; the intervals below overlap wherever they do."
            )
        )
        return blocks
    rows = []
    for other, test in compared:
        within = "yes" if meets_budgets(other, budgets) else "no"
        rows.append(
            (
                _who(other),
                accuracy_text(other),
                within,
                f"{100 * test.difference:+.2f}",
                f"{test.only_first} / {test.only_second}",
                f"{test.p_value:.3g}",
                _verdict(test),
                _needed_text(test),
            )
        )
    blocks.append(
        Table(
            (
                "runner-up",
                "accuracy",
                "within budgets",
                "winner minus it (points)",
                "images only the winner / only it gets right",
                "p (McNemar, exact)",
                "verdict at 5 %",
                "validation images to tell apart",
            ),
            tuple(rows),
        )
    )
    same = [other for other, test in compared if not test.significant(ALPHA)]
    n = winner.val_images
    if same:
        names = ", ".join(_who(o) for o in same)
        needs = [images_needed(t, ALPHA) for o, t in compared if not t.significant(ALPHA)]
        finite = [k for k in needs if k is not None]
        tail = (
            f" With the same shares of disagreeing images, about {min(finite)} validation images (now {n}) would "
            f"tell the closest of them apart, and about {max(finite)} all of them that differ at all."
            if finite
            else " They get as many images right that the winner gets wrong as the reverse: no number of images "
            "would tell them apart."
        )
        blocks.append(
            Para(
                f"The winner is NOT distinguishable from {len(same)} of its {len(compared)} runners-up ({names}): "
                f"on the same {n} validation images their difference is within what chance gives (McNemar's "
                f"exact test, p >= {ALPHA:g}). Any of them is as good a pick on accuracy; prefer the cheaper.{tail}"
            )
        )
    else:
        blocks.append(
            Para(
                f"The winner is distinguishable from all {len(compared)} runners-up compared: on the same {n} "
                f"validation images its advantage is beyond chance (McNemar's exact test, p < {ALPHA:g})."
            )
        )
    return blocks


def _latency_backend_blocks(winner: CandidateRecord | None, run_info: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [Heading(3, "Latency: the runtime measured and the winner on both backends")]
    config = run_info.get("config")
    search = config.get("search", {}) if isinstance(config, Mapping) else {}
    backend = (winner.latency_backend if winner is not None else "") or search.get("latency_backend", "")
    items = [f"The search measured latency on: {backend or 'unknown'}."]
    if winner is not None and math.isfinite(winner.latency_ms):
        ci = ""
        if math.isfinite(winner.latency_ci_low_ms) and math.isfinite(winner.latency_ci_high_ms):
            ci = f", 95 % CI of the median {winner.latency_ci_low_ms:.4g}-{winner.latency_ci_high_ms:.4g} ms"
        items.append(
            f"The winner as the search timed it ({backend}): median {winner.latency_ms:.4g} ms{ci}, "
            f"p10-p90 {winner.latency_p10_ms:.4g}-{winner.latency_p90_ms:.4g} ms."
        )
    export = run_info.get("export")
    check = export.get("check", {}) if isinstance(export, Mapping) else {}
    latency = check.get("latency", {}) if isinstance(check, Mapping) else {}
    exported_trial = export.get("trial") if isinstance(export, Mapping) else None
    shown = False
    for key, label in (("onnxruntime_batch1", "ONNX Runtime (the shipped .onnx file)"), ("eager_batch1", "PyTorch eager")):
        figure = latency.get(key) if isinstance(latency, Mapping) else None
        if isinstance(figure, Mapping) and "median_ms" in figure:
            items.append(
                f"Exported trial {exported_trial}, batch 1 on {label}: median {float(figure['median_ms']):.4g} ms "
                f"(p10 {float(figure.get('p10_ms', math.nan)):.4g}, p90 {float(figure.get('p90_ms', math.nan)):.4g})."
            )
            shown = True
    if shown and winner is not None and exported_trial is not None and exported_trial != winner.trial:
        items.append(f"The exported trial is not the winner shown here (trial {winner.trial}).")
    if not shown:
        items.append("The winner has not been exported yet (nas export), so its latency on both backends is not known.")
    blocks.append(Bullets(tuple(items)))
    return blocks


def _close_calls(pool: Sequence[CandidateRecord], budgets: Mapping[str, float]) -> list[Block]:
    blocks: list[Block] = []
    for metric, bound in budgets.items():
        if metric != "latency_ms" or not math.isfinite(bound):
            continue
        confidence = getattr(bound, "confidence", None)
        close = []
        for r in by_accuracy(pool):
            value = budget_value(r.budget_metrics(), metric, confidence)
            if too_close(value, bound):
                close.append((r, value))
        level = f"their {confidence:.0%} quantile" if confidence is not None else "their median"
        blocks.append(Heading(3, f"Too close to call: latency_ms against {float(bound):.4g} ms"))
        if not close:
            blocks.append(
                Para(
                    f"No candidate has {level.replace('their', 'its')} within {CLOSE_CALL:.0%} of the budget: every candidate is clearly in "
                    "or clearly out."
                )
            )
            continue
        blocks.append(
            Para(
                f"{len(close)} candidate(s) have {level} within {CLOSE_CALL:.0%} of the budget, about what two "
                "timings of the same network differ by on this kind of machine: measured again, they could land on "
                "the other side of it. P(latency <= budget) is read from each candidate's timing quantiles."
            )
        )
        rows = tuple(
            (
                _who(r),
                accuracy_text(r),
                f"{value:.4g} ms",
                _prob_text(r, float(bound)),
                "in" if meets_budgets(r, {metric: bound}) else "out",
            )
            for r, value in close[:_TOP]
        )
        blocks.append(Table(("candidate", "accuracy", "latency checked", "P(latency <= budget)", "counted"), rows))
    return blocks


def _prob_text(record: CandidateRecord, bound: float) -> str:
    from profilers.timing import QUANTILE_LEVELS, prob_at_most

    quantiles = record.latency_quantiles
    if len(quantiles) == len(QUANTILE_LEVELS):
        return f"{prob_at_most(quantiles, bound):.2f}"
    if math.isfinite(record.latency_p10_ms) and math.isfinite(record.latency_p90_ms):
        return f"{prob_at_most((record.latency_p10_ms, record.latency_ms, record.latency_p90_ms), bound, (10.0, 50.0, 90.0)):.2f}"
    return "n/a"


def _interval_table(pool: Sequence[CandidateRecord], budgets: Mapping[str, float]) -> list[Block]:
    ranked = by_accuracy(pool)[:_TOP]
    if not ranked:
        return []
    latency_bound = budgets.get("latency_ms")
    header = ["trial", "accuracy (95 % CI)", "latency median (95 % CI)"]
    if latency_bound is not None and math.isfinite(latency_bound):
        header.append(f"P(latency <= {float(latency_bound):.4g} ms)")
    rows = []
    for r in ranked:
        latency = f"{r.latency_ms:.4g} ms" if math.isfinite(r.latency_ms) else "n/a"
        if math.isfinite(r.latency_ci_low_ms) and math.isfinite(r.latency_ci_high_ms):
            latency += f" ({r.latency_ci_low_ms:.4g}-{r.latency_ci_high_ms:.4g})"
        row = [str(r.trial), accuracy_text(r), latency]
        if len(header) == 4:
            row.append(_prob_text(r, float(latency_bound or math.nan)))
        rows.append(tuple(row))
    return [
        Heading(3, f"Intervals of the top {len(ranked)} candidates by accuracy"),
        Table(tuple(header), tuple(rows)),
    ]


def uncertainty_sections(
    pool: Sequence[CandidateRecord],
    budgets: Mapping[str, Budget] | Mapping[str, float],
    winner: CandidateRecord | None,
    run_info: Mapping[str, Any],
) -> list[Block]:
    """The report's section on how sure its figures are (see the module docstring)."""
    blocks: list[Block] = [Heading(2, "How sure: intervals, the winner against its runners-up, close calls")]
    if not pool:
        return [*blocks, Para("No candidate completed with an accuracy: nothing to be sure about.")]
    n = max((r.val_images for r in pool), default=0)
    if n:
        blocks.append(
            Para(
                f"Accuracies are over {n} validation images: one image is {100 / n:.2f} points. Intervals are 95 % "
                "Wilson intervals; two candidates are compared on the same images (McNemar's exact test), which "
                "tells apart differences that the separate intervals, overlapping, cannot."
            )
        )
    descriptions = [
        f"{metric} ≤ {float(bound):.4g}: {bound.describe()}"
        for metric, bound in budgets.items()
        if hasattr(bound, "describe") and bound.describe()
    ]
    if descriptions:
        blocks.append(Bullets(tuple(f"Budget {text}." for text in descriptions)))
    if winner is not None:
        blocks += _winner_blocks(pool, winner, budgets)
    else:
        blocks.append(Para("No candidate meets the budgets, so there is no winner to compare with runners-up."))
    blocks += _latency_backend_blocks(winner, run_info)
    blocks += _close_calls(pool, budgets)
    blocks += _interval_table(pool, budgets)
    return blocks
