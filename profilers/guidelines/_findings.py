"""What an audit returns: findings with the figures they rest on, and the report that gathers them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Finding", "Guideline", "GuidelineReport", "Scope", "Severity", "share"]

Guideline = Literal["G1", "G2", "G3", "G4", "VoVNet"]
Scope = Literal["layer", "block", "network"]
Severity = Literal["info", "warning"]


@dataclass(frozen=True)
class Finding:
    """One observation about a layer, a block or the network, with the figures behind it."""

    guideline: Guideline
    scope: Scope
    name: str
    severity: Severity
    message: str
    figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the figures copied)."""
        return {
            "guideline": self.guideline,
            "scope": self.scope,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True)
class GuidelineReport:
    """All findings of an audit and a summary (counts per guideline and severity, network figures)."""

    findings: list[Finding]
    summary: dict[str, Any]

    def to_list(self) -> list[dict[str, Any]]:
        """The findings as plain JSON data."""
        return [f.to_dict() for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        """Findings and summary as plain JSON data."""
        return {"findings": self.to_list(), "summary": self.summary}

    def by_guideline(self, guideline: Guideline) -> list[Finding]:
        """The findings of one guideline, in audit order."""
        return [f for f in self.findings if f.guideline == guideline]


def share(part: float, whole: float) -> float:
    """``part / whole``, or ``0.0`` when there is no whole (nothing measured, nothing moved)."""
    return part / whole if whole > 0 else 0.0
