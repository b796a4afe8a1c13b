"""Compound scaling (Tan & Le 2019, eq. 3): one coefficient ``phi`` scales depth, width and resolution.

depth ``d = alpha^phi``, width ``w = beta^phi``, resolution ``r = gamma^phi``, with ``alpha, beta, gamma >= 1``
and ``alpha * beta^2 * gamma^2 ~ 2``, so that the mult-adds of the network grow by about ``2^phi``.

Rounding, so that an architecture is exact plain JSON:
- ``width_mult`` and ``depth_mult`` are rounded to ``MULT_DECIMALS`` (4) decimals (``1.1^2`` is 1.21, not
  1.2100000000000002); the channel and repeat rounding of the reference then apply to them.
- the resolution ``base * gamma^phi`` is rounded to the nearest multiple of a divisor (8 for ImageNet, so
  that the side stays a multiple of the usual 8-pixel tiles; at least one divisor).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MULT_DECIMALS", "Coefficients", "Scaling", "round_resolution", "valid_coefficients"]

MULT_DECIMALS = 4
_EPS = 1e-9


@dataclass(frozen=True)
class Scaling:
    """The multipliers a point of the space implies: recorded in the architecture."""

    width_mult: float
    depth_mult: float
    resolution: int


def round_resolution(side: float, divisor: int) -> int:
    """``side`` rounded to the nearest multiple of ``divisor`` (halves up), never below ``divisor``."""
    if divisor < 1:
        raise ValueError(f"resolution divisor must be >= 1, got {divisor}")
    return max(divisor, int(side / divisor + 0.5) * divisor)


@dataclass(frozen=True, order=True)
class Coefficients:
    """One (alpha, beta, gamma) triple; ``label`` is its spelling in an architecture, e.g. ``"1.2,1.1,1.15"``."""

    alpha: float
    beta: float
    gamma: float

    @property
    def product(self) -> float:
        """``alpha * beta^2 * gamma^2``: the growth of mult-adds per unit of ``phi``."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def label(self) -> str:
        return f"{self.alpha:g},{self.beta:g},{self.gamma:g}"

    @classmethod
    def parse(cls, text: str) -> Coefficients:
        parts = text.split(",") if isinstance(text, str) else []
        try:
            alpha, beta, gamma = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"coefficients {text!r} are not 'alpha,beta,gamma' (three numbers)") from None
        return cls(alpha, beta, gamma)

    def within(self, target: float, tolerance: float) -> bool:
        return abs(self.product - target) <= tolerance + _EPS

    def scaling(self, phi: int, base_resolution: int, resolution_divisor: int) -> Scaling:
        return Scaling(
            width_mult=round(self.beta**phi, MULT_DECIMALS),
            depth_mult=round(self.alpha**phi, MULT_DECIMALS),
            resolution=round_resolution(base_resolution * self.gamma**phi, resolution_divisor),
        )


def valid_coefficients(
    alpha_grid: Iterable[float],
    beta_grid: Iterable[float],
    gamma_grid: Iterable[float],
    target: float,
    tolerance: float,
) -> tuple[Coefficients, ...]:
    """Every grid triple with ``|alpha * beta^2 * gamma^2 - target| <= tolerance``, sorted."""
    betas, gammas = list(beta_grid), list(gamma_grid)
    triples = (Coefficients(a, b, g) for a in alpha_grid for b in betas for g in gammas)
    return tuple(sorted(t for t in triples if t.within(target, tolerance)))
