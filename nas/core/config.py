"""The run configuration: one YAML file, validated by pydantic models, merged over a built-in default.

A ``RunConfig`` is a run ``name``, a ``seed`` and one *section* per concern (``data``, ``space``, ...).
Adding a section is one line in ``RunConfig``: ``supernet: TrainConfig = Field(default_factory=TrainConfig)``.
Any pydantic model works as a section; sections of this package derive from :class:`Section`
(unknown keys are errors, no silent type coercion, immutable).

Rules
-----
- **Merging.** :func:`load_config` merges the user's file over :func:`default_config` key by key, nested
  mappings included (lists are replaced). A partial file is fine, an empty file gives the default.
  A section that declares a ``merge_key`` is replaced as a whole, not merged, when the user's file gives
  that key a different value: ``space: {name: other}`` does not inherit the default space's layout,
  and ``data: {dataset: cifar10, root: ...}`` does not inherit the default's 16-pixel input size.
- **Sections are immutable**: derive a changed configuration with :func:`merge_config` (validated),
  not ``model_copy(update=...)`` (not validated).
- **Types are strict**: ``input_size: "16"`` or ``seed: true`` are errors, an integer is accepted for
  a float. (YAML 1.1 reads ``1e-3`` as a string: write ``1.0e-3``; the error message says so.)
- **Paths** (``data.root``) are kept as written and resolved against the current directory when the
  data is loaded; ``~`` is expanded.
- **The data decides** the space's ``in_channels``, ``num_classes`` and ``input_size``: a space's
  ``overrides`` may not set them (set ``data.input_size`` instead). :func:`make_space` builds the space
  from the section and a loaded :class:`~nas.core.data.DataBundle`. When the configuration is validated, the
  space is built with what is known of the data without reading it (digits: 1 channel, 10 classes,
  8 pixels; CIFAR-10: 3, 10, 32; an image folder: the layout's own values where unknown), so a bad
  space name, layout or override is reported before any work starts.
- **Errors** are :class:`ConfigError` (a ``ValueError``) naming the file, each bad key with its path
  (``data.datset``), the allowed keys (with a "did you mean") or the value given and the type expected.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nas.core.data import DataBundle, dataset_facts, load_dataset
from nas.core.data.datasets import BUILT_IN
from nas.core.errors import UsageError, clip
from nas.core.sections import RankingConfig, ReportConfig, SearchConfig
from nas.core.yaml_input import read_yaml
from search_spaces import get_space, list_spaces
from search_spaces.validation import did_you_mean, format_validation_error, model_class
from supernet.config import TrainConfig

if typing.TYPE_CHECKING:
    from search_spaces import SearchSpace

__all__ = [
    "DATA_OWNED_KEYS",
    "ConfigError",
    "DataConfig",
    "RunConfig",
    "Section",
    "SpaceSection",
    "config_from_mapping",
    "default_config",
    "load_config",
    "make_space",
    "merge_config",
    "write_config",
]

# Keys of a space configuration that come from the data, never from the space section.
DATA_OWNED_KEYS: tuple[str, ...] = ("in_channels", "num_classes", "input_size")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(ValueError, UsageError):
    """A configuration that cannot be used; the message names the file, the key and what is allowed."""


class Section(BaseModel):
    """Base of the configuration sections: unknown keys are errors, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Name of a key whose change replaces the whole section instead of merging into the default one.
    merge_key: ClassVar[str | None] = None


class DataConfig(Section):
    """Which data, at which input size, split how (see ``nas.core.data`` for the formats and decisions)."""

    merge_key: ClassVar[str | None] = "dataset"

    dataset: Literal["digits", "strokes", "cifar10", "image_folder"] = "digits"
    root: str | None = None  # a directory; required by cifar10 and image_folder, refused by digits
    input_size: int | None = Field(default=None, ge=1)  # None: the data set's native size
    val_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)  # unused by cifar10 and split image folders
    split_seed: int = 0  # the split is fixed for a project, independent of the run seed
    train_limit: int | None = Field(default=None, ge=1)  # cap on samples per split, for quick runs
    val_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.dataset in BUILT_IN and self.root is not None:
            raise ValueError(f"root: dataset {self.dataset!r} is built in and takes no root (got {self.root!r})")
        if self.dataset not in BUILT_IN and not self.root:
            raise ValueError(f"root: dataset {self.dataset!r} needs a root directory")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "val_fraction + test_fraction must be below 1 (train needs the rest), "
                f"got {self.val_fraction} + {self.test_fraction}"
            )
        return self

    def load(self) -> DataBundle:
        """Read the data into memory."""
        return load_dataset(
            self.dataset,
            root=self.root,
            input_size=self.input_size,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            split_seed=self.split_seed,
            train_limit=self.train_limit,
            val_limit=self.val_limit,
            test_limit=self.test_limit,
        )

    def known_space_keys(self) -> dict[str, int]:
        """The space keys this data will set, as far as they are known without reading any file."""
        facts = dataset_facts(self.dataset)
        known: dict[str, int] = {}
        if facts is not None:
            known = {"in_channels": facts[0], "num_classes": facts[1], "input_size": facts[2]}
        if self.input_size is not None:
            known["input_size"] = self.input_size
        return known


class SpaceSection(Section):
    """A search space of ``search_spaces``: its name, a named layout and overrides of the layout's keys."""

    merge_key: ClassVar[str | None] = "name"

    name: str
    layout: str | None = None  # None: the space's default layout
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_space(cls, value: str) -> str:
        if value not in list_spaces():
            hint = did_you_mean(value, list_spaces())
            raise ValueError(f"unknown space {value!r}{hint}; allowed: {', '.join(list_spaces())}")
        return value

    @field_validator("overrides")
    @classmethod
    def _not_data_owned(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = [k for k in value if k in DATA_OWNED_KEYS or k == "layout"]
        if owned:
            raise ValueError(
                f"overrides may not set {owned}: 'layout' is its own key, and in_channels, num_classes and "
                "input_size come from the data (set data.input_size)"
            )
        return value

    def space_config(self, data_keys: Mapping[str, Any]) -> dict[str, Any]:
        """The mapping given to ``search_spaces.get_space``: layout, overrides, then the data's keys."""
        config: dict[str, Any] = {} if self.layout is None else {"layout": self.layout}
        return {**config, **self.overrides, **data_keys}


class RunConfig(Section):
    """Everything one run needs. Add a section with one field line (see the module docstring)."""

    name: str = "default"  # the run's name: letters, digits, '.', '_' and '-'
    seed: int = Field(default=0, ge=0)
    # The default task splits digits 60/30/10: the validation split ranks every candidate, and at 15 % (269
    # images, one image = 0.37 points) the ten best candidates were within one 95 % interval of each other. At 30 %
    # (539 images) an interval is ~1.8 points wide each side at 95 % accuracy instead of ~2.6, and the paired test
    # of two candidates sees twice the disagreeing images. The test split is not used by the search.
    data: DataConfig = Field(
        default_factory=lambda: DataConfig(dataset="digits", input_size=16, val_fraction=0.3, test_fraction=0.1)
    )
    space: SpaceSection = Field(default_factory=lambda: SpaceSection(name="shufflenet", layout="small"))
    supernet: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _RUN_NAME.match(value):
            raise ValueError(
                f"run name {value!r} is not allowed; use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _space_accepts_data(self) -> RunConfig:
        try:
            get_space(self.space.name, self.space.space_config(self.data.known_space_keys()))
        except ValueError as err:
            raise ValueError(f"space: {err}") from None
        return self


# --------------------------------------------------------------------------------------------------
# building, loading, writing
# --------------------------------------------------------------------------------------------------
def make_space(cfg: RunConfig | SpaceSection, data: DataBundle) -> SearchSpace:
    """The search space of ``cfg`` for ``data``: the data sets in_channels, num_classes and input_size."""
    section = cfg.space if isinstance(cfg, RunConfig) else cfg
    try:
        return get_space(section.name, section.space_config(data.space_overrides()))
    except ValueError as err:
        raise ConfigError(f"space {section.name!r} does not accept data {data.name!r}: {err}") from None


def default_config() -> RunConfig:
    """The built-in configuration: digits at 16x16 pixels and the shufflenet space's small layout."""
    return RunConfig()


def named_config(name: str | None) -> RunConfig:
    """The default (``None`` or ``"default"``) or a named built-in config (:mod:`nas.core.builtin_configs`)."""
    from nas.core.builtin_configs import BUILTIN_CONFIGS

    if name is None or name == "default":
        return default_config()
    if name not in BUILTIN_CONFIGS:
        raise ConfigError(f"unknown built-in config {clip(name)}; allowed: default, {', '.join(BUILTIN_CONFIGS)}")
    return merge_config(default_config(), BUILTIN_CONFIGS[name], source=f"built-in config {name!r}")


def merge_config(base: RunConfig, updates: Mapping[str, Any], source: str = "<mapping>") -> RunConfig:
    """``base`` with ``updates`` merged over it (see the merge rules in the module docstring)."""
    if not isinstance(updates, Mapping):
        raise ConfigError(f"{source}: a configuration must be a mapping of sections, got {type(updates).__name__}")
    merged = base.model_dump(mode="python")
    for key, value in updates.items():
        field = type(base).model_fields.get(key) if isinstance(key, str) else None
        section_cls = model_class(field.annotation) if field is not None else None
        current = merged.get(key)
        if section_cls is not None and isinstance(value, Mapping) and isinstance(current, dict):
            merge_key = getattr(section_cls, "merge_key", None)
            if merge_key is not None and merge_key in value and value[merge_key] != current.get(merge_key):
                merged[key] = dict(value)
                continue
        merged[key] = _deep_merge(current, value) if key in merged else value
    return config_from_mapping(merged, source, cls=type(base))


def config_from_mapping(
    mapping: Mapping[str, Any], source: str = "<mapping>", cls: type[RunConfig] = RunConfig
) -> RunConfig:
    """Validate a complete mapping (no merging) into a run configuration, or raise ConfigError."""
    try:
        return cls.model_validate(dict(mapping))
    except ValidationError as err:
        raise ConfigError(f"{source}: " + format_validation_error(err, cls)) from None


def load_config(path: str | os.PathLike[str], base: RunConfig | None = None) -> RunConfig:
    """Read a YAML file and merge it over ``base`` (the built-in default when None).

    ``path`` may also be the name of a built-in configuration (:mod:`nas.core.builtin_configs`, e.g. ``strokes``)
    when no file of that name exists.
    """
    from nas.core.builtin_configs import BUILTIN_CONFIGS

    file = Path(path)
    shown = clip(str(file))
    if not file.is_file() and str(path) in BUILTIN_CONFIGS:  # a built-in named configuration
        return merge_config(default_config() if base is None else base, BUILTIN_CONFIGS[str(path)], source=str(path))
    if not file.is_file():
        named = ", ".join(BUILTIN_CONFIGS)
        raise ConfigError(f"config file {shown} does not exist (or is not a file); built-in names: {named}")
    try:
        raw = read_yaml(file)
    except ValueError as err:
        raise ConfigError(f"config file {shown} {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {shown} cannot be read: {clip(str(err), 120)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        allowed = ", ".join(type(base).model_fields if base is not None else RunConfig.model_fields)
        raise ConfigError(
            f"config file {shown} must hold a mapping of sections ({allowed}), got {type(raw).__name__}"
        )
    return merge_config(default_config() if base is None else base, raw, source=str(file))


def write_config(cfg: RunConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as YAML (every key, so the file alone reproduces the run); atomic replace."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
    partial = file.with_name(file.name + ".tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, file)  # a reader never sees half a file
    return file


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, Mapping):
        out = dict(base)
        for key, value in update.items():
            out[key] = _deep_merge(base[key], value) if key in base else value
        return out
    return update


def load_data(cfg: RunConfig) -> DataBundle:
    """The run's data; a missing directory, an empty class or an unreadable file is bad input (exit 2)."""
    try:
        return cfg.data.load()
    except (ValueError, OSError) as err:
        raise UsageError(f"data: {err}") from None
