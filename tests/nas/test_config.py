"""The run configuration: defaults, YAML merging, error messages, round trips, the space built from the data."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from nas.core.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    SpaceSection,
    config_from_mapping,
    default_config,
    load_config,
    make_space,
    merge_config,
    write_config,
)
from nas.core.data import DATASETS, load_dataset


def _yaml(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_is_digits_at_16_pixels_and_the_small_shufflenet() -> None:
    cfg = default_config()
    assert cfg.name == "default" and cfg.seed == 0
    assert cfg.data == DataConfig(dataset="digits", input_size=16, val_fraction=0.3, test_fraction=0.1)
    assert (cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.root) == (0.3, 0.1, None)
    assert cfg.space == SpaceSection(name="shufflenet", layout="small")
    assert set(typing.get_args(DataConfig.model_fields["dataset"].annotation)) == set(DATASETS)


def test_make_space_takes_shape_and_classes_from_the_data() -> None:
    cfg = merge_config(default_config(), {"data": {"train_limit": 20, "val_limit": 10, "test_limit": 10}})
    bundle = cfg.data.load()
    assert bundle.sizes() == {"train": 20, "val": 10, "test": 10} and bundle.input_size == 16
    space = make_space(cfg, bundle)
    assert space.config.in_channels == 1 and space.num_classes == 10 and space.input_size == 16
    model = space.build(space.sample(0)).eval()
    with torch.inference_mode():
        assert model(bundle.val.tensors[0][:2]).shape == (2, 10)
    assert make_space(cfg.space, bundle).config == space.config


def test_make_space_for_an_image_folder_with_its_own_classes(tmp_path: Path) -> None:
    for c, name in enumerate(("a", "b", "c")):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * c + i, np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    cfg = merge_config(
        default_config(),
        {
            "data": {
                "dataset": "image_folder",
                "root": str(tmp_path / "imgs"),
                "val_fraction": 0.25,
                "test_fraction": 0.25,
            }
        },
    )
    assert cfg.data.input_size is None  # a new dataset does not inherit the default's 16 pixels
    space = make_space(cfg, cfg.data.load())
    assert (space.config.in_channels, space.num_classes, space.input_size) == (3, 3, 8)


def test_partial_yaml_overrides_key_by_key(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "name: quick\nseed: 3\ndata:\n  input_size: 8\n  train_limit: 100\n")
    cfg = load_config(path)
    assert cfg.name == "quick" and cfg.seed == 3
    assert cfg.data.dataset == "digits" and cfg.data.input_size == 8 and cfg.data.train_limit == 100
    assert cfg.data.val_fraction == 0.3 and cfg.space == default_config().space
    overrides = load_config(_yaml(tmp_path, "space:\n  overrides:\n    stem_channels: 8\n", "o.yaml"))
    assert overrides.space.layout == "small" and overrides.space.overrides == {"stem_channels": 8}
    assert load_config(_yaml(tmp_path, "", "empty.yaml")) == default_config()
    assert load_config(_yaml(tmp_path, "# only a comment\n", "comment.yaml")) == default_config()


def test_a_new_dataset_or_space_replaces_its_section(tmp_path: Path) -> None:
    cifar = load_config(_yaml(tmp_path, "data:\n  dataset: cifar10\n  root: /data/cifar\n"))
    assert cifar.data == DataConfig(dataset="cifar10", root="/data/cifar")
    same = load_config(_yaml(tmp_path, "space:\n  name: shufflenet\n  overrides: {dropout: 0.1}\n", "s.yaml"))
    assert same.space.layout == "small"  # same space: merged, layout kept


def test_unknown_key_names_its_path_the_allowed_keys_and_a_guess(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "data:\n  datset: digits\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "unknown key 'data.datset' (did you mean 'dataset'?)" in message
    assert "allowed keys in 'data': dataset, root, input_size, val_fraction" in message
    with pytest.raises(ConfigError, match=r"unknown key 'spaec' \(did you mean 'space'\?\); allowed keys: name, seed"):
        load_config(_yaml(tmp_path, "spaec: {}\n", "top.yaml"))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "data:\n  input_size: '16'\n",
            "data.input_size: Input should be a valid integer; got '16' (str), expected an integer or null",
        ),
        ("seed: true\n", "seed: Input should be a valid integer; got True (bool), expected an integer"),
        ("data:\n  val_fraction: 1e-3\n", "got '1e-3' (str), expected a number (YAML reads '1e-3' as a string"),
        (
            "data:\n  dataset: mnist\n",
            "data.dataset: Input should be 'digits', 'strokes', 'cifar10' or 'image_folder'; got 'mnist'",
        ),
        (
            "data: 5\n",
            "data: Input should be a valid dictionary or instance of DataConfig; got 5 (int), "
            "expected a mapping with keys dataset, root",
        ),
        (
            "space:\n  overrides: [1]\n",
            "space.overrides: Input should be a valid dictionary; got [1] (list), expected a mapping",
        ),
        ("seed: -1\n", "seed: Input should be greater than or equal to 0; got -1"),
        ("name: 'my run'\n", "name: run name 'my run' is not allowed; use letters, digits"),
    ],
)
def test_wrong_types_name_the_key_the_value_and_the_type(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_yaml(tmp_path, text))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:\n  root: /x\n", "data.root: dataset 'digits' is built in and takes no root"),
        ("data:\n  dataset: image_folder\n", "data.root: dataset 'image_folder' needs a root directory"),
        ("data:\n  val_fraction: 0.6\n  test_fraction: 0.5\n", "data: val_fraction + test_fraction must be below 1"),
        (
            "space:\n  name: shufflenett\n",
            "space.name: unknown space 'shufflenett' (did you mean 'shufflenet'?); allowed: shufflenet",
        ),
        ("space:\n  layout: tiny\n", "space: unknown layout 'tiny' for space 'shufflenet'; allowed: spos-imagenet"),
        ("space:\n  overrides: {stem_channel: 8}\n", "unknown key 'stem_channel' (did you mean 'stem_channels'?); allowed keys: layout"),
        ("space:\n  overrides: {num_classes: 8}\n", "space.overrides: overrides may not set ['num_classes']"),
    ],
)
def test_inconsistent_values_are_explained(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_yaml(tmp_path, text))
    assert expected in str(info.value)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match=r"config file '.*bad\.yaml' is not valid YAML: .*line 2"):
        load_config(_yaml(tmp_path, "data:\n  input_size: [16\n", "bad.yaml"))
    with pytest.raises(
        ValueError,
        match=r"config file '.*list\.yaml' must hold a mapping of sections "
        r"\(name, seed, data, space, supernet, search, report, ranking\), got list",
    ):
        load_config(_yaml(tmp_path, "- data\n- space\n", "list.yaml"))
    with pytest.raises(ConfigError, match="must be a mapping of sections, got str"):
        merge_config(default_config(), "data")  # type: ignore[arg-type]


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = merge_config(
        default_config(),
        {
            "name": "r1",
            "seed": 9,
            "data": {"input_size": 8, "val_limit": 30, "val_fraction": 0.2},
            "space": {"overrides": {"stem_channels": 8, "stage_channels": [16, 32, 64]}},
        },
    )
    path = write_config(cfg, tmp_path / "run" / "config.yaml")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text())["data"]["val_fraction"] == 0.2
    assert config_from_mapping(yaml.safe_load(path.read_text())) == cfg  # the file alone is complete
    write_config(default_config(), path)  # replaced in place
    assert load_config(path) == default_config()


def test_a_loaded_config_reads_the_same_data_as_load_dataset() -> None:
    cfg = merge_config(default_config(), {"data": {"input_size": 8, "split_seed": 4, "train_limit": 30}})
    a, b = cfg.data.load(), load_dataset(
        "digits", input_size=8, split_seed=4, train_limit=30, val_fraction=0.3, test_fraction=0.1
    )
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and a.sizes() == b.sizes()


class _TrainSection(BaseModel):
    """A section as another package would write it (not derived from nas.core.config.Section)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = 2
    lr: float = 0.1


class _ExtendedRun(RunConfig):
    supernet: _TrainSection = Field(default_factory=_TrainSection)


def test_adding_a_section_is_one_field(tmp_path: Path) -> None:
    base = _ExtendedRun()
    cfg = load_config(_yaml(tmp_path, "supernet:\n  epochs: 5\n"), base=base)
    assert isinstance(cfg, _ExtendedRun) and cfg.supernet.epochs == 5 and cfg.supernet.lr == 0.1
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'supernet.epoch' \(did you mean 'epochs'\?\); "
        r"allowed keys in 'supernet': epochs, lr",
    ):
        load_config(_yaml(tmp_path, "supernet:\n  epoch: 5\n", "bad.yaml"), base=base)
    path = write_config(cfg, tmp_path / "out.yaml")
    assert load_config(path, base=base) == cfg
