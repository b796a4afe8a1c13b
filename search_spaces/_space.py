"""The search-space contract every space implements.

A space is a family of networks (``name``) with a *configuration* (input size, classes, stage layout...)
validated by a pydantic model, and the ordered *choices* that configuration implies. An architecture
of the space picks one option per label. ``build`` turns a valid architecture into a static
``nn.Module`` made of plain PyTorch layers. Presets are named (configuration, architecture) pairs that
reproduce published networks.
"""

from __future__ import annotations

import abc
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from search_spaces._arch import Architecture, Scalar
from search_spaces.validation import format_validation_error

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from search_spaces._blocks import LatencyBlock

__all__ = ["Preset", "SearchSpace", "SpaceConfig"]


class SpaceConfig(BaseModel):
    """Base of every space's configuration: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int
    num_classes: int
    in_channels: int = 3


@dataclass(frozen=True)
class Preset:
    """A published network: the space configuration and the architecture that reproduce it."""

    config: Mapping[str, Any]
    values: Mapping[str, Scalar]
    description: str = ""
    # Published figures, e.g. {"params": 2.3e6, "mult_adds": 146e6}, used by tests and `nas spaces`.
    reference: Mapping[str, float] = field(default_factory=dict)


class SearchSpace(abc.ABC):
    """Base class of all search spaces.

    Subclasses set ``name``, ``Config`` (a ``SpaceConfig`` subclass), ``layouts`` (named base
    configurations, e.g. the published ImageNet layout and a small one for 16-32 pixel inputs) and
    implement ``choices``, ``build`` and ``preset_table``. Spaces with constraints between choices
    override ``check_constraints`` and, so that samplers never propose invalid points, ``sample``
    and ``suggest``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[SpaceConfig]]
    layouts: ClassVar[Mapping[str, Mapping[str, Any]]]
    default_layout: ClassVar[str]

    def __init__(self, config: SpaceConfig | Mapping[str, Any] | None = None) -> None:
        if isinstance(config, SpaceConfig):
            if not isinstance(config, self.Config):
                raise ValueError(f"space {self.name!r} needs a {self.Config.__name__}, got {type(config).__name__}")
            self.config: SpaceConfig = config
        else:
            self.config = self.make_config(config or {})

    # configuration ------------------------------------------------------------------------------
    @classmethod
    def make_config(cls, config: Mapping[str, Any]) -> SpaceConfig:
        """Configuration from a mapping: ``layout`` names a base layout, other keys override it."""
        data = dict(config)  # never mutate the caller's mapping
        layout = data.pop("layout", cls.default_layout)
        if layout not in cls.layouts:
            raise ValueError(
                f"unknown layout {layout!r} for space {cls.name!r}; allowed: {', '.join(cls.layouts)}"
            )
        merged = {**cls.layouts[layout], **data}
        try:
            return cls.Config(**merged)
        except ValidationError as err:
            message = format_validation_error(err, cls.Config, extra_keys=["layout"])
            raise ValueError(f"invalid {cls.name} space config: {message}") from None

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def resolution(self, arch: Architecture | None = None) -> int:
        """Input side length for ``arch``: the configured input size, unless the space searches resolution."""
        return self.config.input_size

    def input_shape(self, batch_size: int = 1, arch: Architecture | None = None) -> tuple[int, int, int, int]:
        side = self.resolution(arch)
        return (batch_size, self.config.in_channels, side, side)

    # choices ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def choices(self) -> dict[str, tuple[Scalar, ...]]:
        """Ordered mapping label -> allowed options."""

    def labels(self) -> list[str]:
        return list(self.choices())

    def cardinality(self) -> int:
        """Number of label combinations (before constraints between choices)."""
        return math.prod(len(options) for options in self.choices().values())

    # validation ---------------------------------------------------------------------------------
    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        """Return the architecture if it is valid here; raise ValueError naming what is wrong."""
        if not isinstance(arch, Architecture):
            arch = Architecture(space=self.name, values=arch)
        if arch.space != self.name:
            raise ValueError(f"architecture belongs to space {arch.space!r}, not {self.name!r}")
        choices = self.choices()
        unknown = [label for label in arch if label not in choices]
        if unknown:
            hint = difflib.get_close_matches(unknown[0], list(choices), n=1)
            near = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(
                f"label {unknown[0]!r} is not in space {self.name!r}{near}; "
                f"labels: {_short_list(list(choices))}"
            )
        for label, value in arch.items():
            if not _is_option(value, choices[label]):
                raise ValueError(f"label {label!r}: value {value!r} is not allowed; allowed: {list(choices[label])}")
        missing = [label for label in choices if label not in arch]
        if missing:
            raise ValueError(
                f"label {missing[0]!r} is missing"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f"; allowed values for it: {list(choices[missing[0]])}"
            )
        self.check_constraints(arch)
        return arch

    def check_constraints(self, arch: Architecture) -> None:  # noqa: B027 - a hook, empty by default
        """Raise ValueError if choices that are each allowed are not allowed together."""

    def make_arch(self, values: Mapping[str, Any]) -> Architecture:
        return self.validate(Architecture(space=self.name, values=values))

    # sampling -----------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator | int | None = None) -> Architecture:
        """One architecture drawn uniformly per label, from the caller's seeded generator."""
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        choices = self.choices()
        for _ in range(10_000):
            values = {label: _native(options[int(gen.integers(len(options)))]) for label, options in choices.items()}
            arch = Architecture(space=self.name, values=values)
            try:
                self.check_constraints(arch)
            except ValueError:
                continue
            return arch
        raise RuntimeError(f"space {self.name!r}: no valid architecture found in 10000 draws")

    def suggest(self, trial: optuna.trial.BaseTrial) -> Architecture:
        """Suggest an architecture through an Optuna trial (a FixedTrial replays a record)."""
        values = {label: trial.suggest_categorical(label, list(options)) for label, options in self.choices().items()}
        return self.make_arch(values)

    # building -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, arch: Architecture | Mapping[str, Any]) -> nn.Module:
        """A static network of plain PyTorch layers for a valid architecture."""

    def latency_blocks(self, arch: Architecture | Mapping[str, Any]) -> list[LatencyBlock]:
        """The network of ``arch`` as latency blocks in execution order (see ``search_spaces._blocks``).

        Nothing is built or timed: each block carries a factory of its layers. Equal blocks of different
        architectures have equal ``signature``s, so a latency table measures them once.
        """
        raise NotImplementedError(f"space {self.name!r} does not decompose its networks into latency blocks")

    # presets ------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def preset_table(cls) -> Mapping[str, Preset]:
        """Named published networks."""

    @classmethod
    def preset(cls, name: str) -> tuple[SearchSpace, Architecture]:
        table = cls.preset_table()
        if name not in table:
            raise ValueError(f"unknown preset {name!r} for space {cls.name!r}; allowed: {', '.join(table)}")
        spec = table[name]
        space = cls(spec.config)
        return space, space.make_arch(spec.values)

    # description --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "config": self.config_dict(),
            "layouts": list(self.layouts),
            "choices": {label: list(options) for label, options in self.choices().items()},
            "cardinality": self.cardinality(),
            "presets": {name: p.description for name, p in self.preset_table().items()},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def _is_option(value: Scalar, options: tuple[Scalar, ...]) -> bool:
    # bool is an int in Python: True must not pass for 1, nor 1 for True.
    return any(value == option and isinstance(value, bool) == isinstance(option, bool) for option in options)


def _native(value: Any) -> Scalar:
    return value.item() if isinstance(value, np.generic) else value


def _short_list(items: list[str], limit: int = 12) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"
