"""How sure a figure is: accuracy intervals, paired comparisons of candidates, latency against a bound.

- **Accuracy interval**: the Wilson score interval (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``)
  of ``k`` correct predictions out of ``n`` validation images. Wilson rather than the normal ("Wald") interval:
  it stays inside [0, 1] and keeps its coverage near 0 and 1, where good classifiers live.
- **Per-image correctness** is kept as a hex string (:func:`encode_correct`): bit ``i`` of the integer is image
  ``i`` of the validation split (in the split's order). Two candidates scored on the same split are compared
  image by image.
- **Paired test** (:func:`paired_test`): McNemar's exact test. Of the images exactly one of the two candidates
  gets right (``b``: only the first, ``c``: only the second), under "equally accurate" each is the first's with
  probability 1/2: the two-sided exact binomial test of ``b`` out of ``b + c`` (``scipy.stats.binomtest``).
  Images both get right or both get wrong say nothing about which is better, which is why a paired test tells
  apart candidates whose separate intervals overlap.
- **Images needed** (:func:`images_needed`): how many validation images, with the same shares of images only one
  candidate gets right, would make the exact test significant at ``alpha``. A rough planning figure: it assumes
  the observed shares are the true ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "PairedTest",
    "decode_correct",
    "encode_correct",
    "images_needed",
    "paired_test",
    "wilson_interval",
]


def wilson_interval(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / total`` (NaNs when ``total`` is 0)."""
    from scipy.stats import binomtest

    if total <= 0:
        return math.nan, math.nan
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be in [0, total], got {correct} of {total}")
    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def encode_correct(correct: Sequence[bool] | np.ndarray) -> str:
    """Per-image correctness as hex: bit ``i`` (least significant first) is image ``i``. Empty input: ``""``."""
    bits = np.asarray(correct, dtype=bool)
    if bits.size == 0:
        return ""
    return np.packbits(bits, bitorder="little").tobytes().hex()


def decode_correct(text: str, count: int) -> np.ndarray:
    """The boolean vector of :func:`encode_correct` for ``count`` images; ``ValueError`` if it does not fit."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    raw = bytes.fromhex(text) if text else b""
    if len(raw) != (count + 7) // 8:
        raise ValueError(f"a correctness string of {len(raw)} bytes does not hold {count} images")
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:count]
    return bits.astype(bool)


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of two candidates on the same images."""

    images: int
    only_first: int  # images only the first candidate gets right
    only_second: int
    p_value: float  # two-sided; 1.0 when they never disagree
    difference: float  # accuracy of the first minus the second, in [-1, 1]

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def _exact_p(only_first: int, only_second: int) -> float:
    from scipy.stats import binomtest

    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(binomtest(only_first, discordant, 0.5).pvalue)


def paired_test(first: np.ndarray, second: np.ndarray) -> PairedTest:
    """McNemar's exact test on two boolean vectors of per-image correctness (same images, same order)."""
    a, b = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two correctness vectors of the same length, got {a.shape} and {b.shape}")
    only_first = int(np.sum(a & ~b))
    only_second = int(np.sum(~a & b))
    n = int(a.size)
    return PairedTest(
        images=n,
        only_first=only_first,
        only_second=only_second,
        p_value=_exact_p(only_first, only_second),
        difference=(only_first - only_second) / n if n else math.nan,
    )


def images_needed(test: PairedTest, alpha: float = 0.05, limit: int = 10_000_000) -> int | None:
    """Validation images that would make ``test``'s difference significant at ``alpha``, with the same shares.

    The shares of images only one candidate gets right are kept and the exact test is run on the counts they
    give at ``n`` images; the smallest such ``n`` (at least the current size) is returned. ``None`` when the
    candidates never disagree or disagree equally often in both directions (no number of images would tell them
    apart), or when more than ``limit`` would be needed.
    """
    if test.images == 0 or test.only_first == test.only_second:
        return None
    share_first, share_second = test.only_first / test.images, test.only_second / test.images

    def significant(n: int) -> bool:
        return _exact_p(round(share_first * n), round(share_second * n)) < alpha

    if significant(test.images):
        return test.images
    low, high = test.images, test.images
    while not significant(high):
        low, high = high, high * 2
        if high > limit:
            return None
    while high - low > max(1, low // 100):  # to 1 %: a planning figure
        mid = (low + high) // 2
        low, high = (low, mid) if significant(mid) else (mid, high)
    return high
