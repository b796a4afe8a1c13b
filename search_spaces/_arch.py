"""Architectures as plain data: a flat mapping label -> JSON scalar, plus the name of its space."""

from __future__ import annotations

import hashlib
import json
from collections.abc import ItemsView, Iterator, KeysView, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

Scalar: TypeAlias = str | int | float | bool
_SCALARS = (str, int, float, bool)

__all__ = ["Architecture", "Scalar"]


@dataclass(frozen=True)
class Architecture:
    """One point of a search space.

    ``values`` is a read-only copy of the mapping ``label -> value`` (JSON scalars only); the architecture
    itself reads like that mapping (``arch[label]``, ``dict(arch)``, ``{**arch}``, ``arch.items()``). ``to_json``/``from_json`` round-trip exactly and ``arch_id`` is a stable short
    hash of the canonical JSON, so the same architecture has the same id in every process and run.
    Whether the values are *allowed* is the space's business: see ``SearchSpace.validate``.
    """

    space: str
    values: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space:
            raise ValueError(f"architecture space must be a non-empty string, got {self.space!r}")
        if not isinstance(self.values, Mapping):
            raise ValueError(f"architecture values must be a mapping label -> value, got {type(self.values).__name__}")
        clean: dict[str, Scalar] = {}
        for label, value in self.values.items():
            if not isinstance(label, str):
                raise ValueError(f"architecture label {label!r} must be a string")
            if not isinstance(value, _SCALARS):
                raise ValueError(
                    f"label {label!r}: value {value!r} is a {type(value).__name__}; "
                    "allowed: a JSON scalar (string, integer, number or boolean)"
                )
            clean[label] = value
        # A private copy: the caller's dict may change later without changing this architecture.
        object.__setattr__(self, "values", dict(clean))

    # Read-only mapping interface (not a Mapping subclass: ``values`` is the field, not a method) -----
    def __getitem__(self, label: str) -> Scalar:
        return self.values[label]

    def __contains__(self, label: object) -> bool:
        return label in self.values

    def keys(self) -> KeysView[str]:
        return self.values.keys()

    def items(self) -> ItemsView[str, Scalar]:
        return self.values.items()

    def get(self, label: str, default: Scalar | None = None) -> Scalar | None:
        return self.values.get(label, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __hash__(self) -> int:
        return hash(self.canonical_json())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Architecture):
            return NotImplemented
        return self.canonical_json() == other.canonical_json()

    # JSON -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "values": dict(self.values)}

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        if not isinstance(data, Mapping):
            raise ValueError(f"an architecture is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"space", "values", "arch_id"})
        if unknown:
            raise ValueError(f"unknown architecture key(s) {unknown}; allowed: 'space', 'values' (and 'arch_id')")
        if "space" not in data or "values" not in data:
            raise ValueError('an architecture needs the keys "space" and "values"')
        arch = cls(space=data["space"], values=data["values"])
        if "arch_id" in data and data["arch_id"] != arch.arch_id:
            raise ValueError(f"arch_id {data['arch_id']!r} does not match the values (expected {arch.arch_id!r})")
        return arch

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid architecture JSON: {err}") from None
        return cls.from_dict(data)

    @property
    def arch_id(self) -> str:
        """First 12 hex digits of the SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Architecture(space={self.space!r}, id={self.arch_id}, values={self.values!r})"
