"""The space contract: architectures as data, validation messages, sampling, suggestion, registry."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from search_spaces import Architecture, get_space, get_space_class, list_spaces


def test_architecture_round_trips_through_json_with_a_stable_id() -> None:
    arch = Architecture("shufflenet", {"b": 2, "a": "x", "c": 1.5, "d": True})
    again = Architecture.from_json(arch.to_json())
    assert again == arch and again.arch_id == arch.arch_id
    # Key order does not change the id; a value does.
    assert Architecture("shufflenet", {"d": True, "c": 1.5, "a": "x", "b": 2}).arch_id == arch.arch_id
    assert Architecture("shufflenet", {"b": 3, "a": "x", "c": 1.5, "d": True}).arch_id != arch.arch_id
    assert len(arch.arch_id) == 12 and int(arch.arch_id, 16) >= 0
    assert json.loads(arch.to_json()) == {"space": "shufflenet", "values": {"b": 2, "a": "x", "c": 1.5, "d": True}}


def test_architecture_copies_the_callers_mapping_and_rejects_objects() -> None:
    values = {"a": 1}
    arch = Architecture("s", values)
    values["a"] = 2
    assert arch["a"] == 1
    with pytest.raises(ValueError, match="JSON scalar"):
        Architecture("s", {"a": [1, 2]})
    with pytest.raises(ValueError, match="does not match"):
        Architecture.from_dict({"space": "s", "values": {"a": 1}, "arch_id": "000000000000"})
    with pytest.raises(ValueError, match="invalid architecture JSON"):
        Architecture.from_json("{nope")


def test_registry_is_lazy_and_names_allowed_spaces() -> None:
    assert "shufflenet" in list_spaces()
    with pytest.raises(ValueError, match=r"unknown space 'nope'; allowed: .*shufflenet"):
        get_space("nope")


@pytest.fixture
def small():
    return get_space("shufflenet", {"layout": "small"})


def test_validate_names_label_value_and_options(small) -> None:
    good = small.sample(0)
    assert small.validate(good) is good
    with pytest.raises(ValueError, match=r"label 'layer_0': value 'shuffle9' is not allowed; allowed: \['shuffle3'"):
        small.validate({**good, "layer_0": "shuffle9"})
    with pytest.raises(ValueError, match=r"label 'layer_42' is not in space 'shufflenet'"):
        small.validate({**good, "layer_42": "shuffle3"})
    missing = dict(good)
    del missing["layer_3"]
    with pytest.raises(ValueError, match=r"label 'layer_3' is missing"):
        small.validate(missing)
    with pytest.raises(ValueError, match=r"belongs to space 'nasnet'"):
        small.validate(Architecture("nasnet", dict(good)))
    # bool is not an int, and an int is not a string
    with pytest.raises(ValueError, match="not allowed"):
        small.validate({**good, "layer_0": 3})


def test_config_errors_name_the_key_and_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown key 'stem_channel'.*allowed keys: .*stem_channels"):
        get_space("shufflenet", {"layout": "small", "stem_channel": 8})
    with pytest.raises(ValueError, match=r"unknown layout 'tiny'.*allowed: .*small"):
        get_space("shufflenet", {"layout": "tiny"})
    with pytest.raises(ValueError, match="must be non-empty and of the same length"):
        get_space("shufflenet", {"layout": "small", "stage_repeats": [1, 1]})


def test_sampling_is_seeded_and_covers_the_options(small) -> None:
    a = [small.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(1)
    seen = {small.sample(rng)["layer_0"] for _ in range(200)}
    assert seen == set(small.choices()["layer_0"])


def test_suggest_through_optuna_and_replay_with_fixed_trial(small) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    arch = small.suggest(trial)
    assert small.validate(arch) == arch
    replay = small.suggest(optuna.trial.FixedTrial(dict(arch)))
    assert replay == arch


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_describes_itself(name: str) -> None:
    cls = get_space_class(name)
    info = cls().describe()
    assert info["name"] == name and info["choices"] and info["presets"]
    json.dumps(info)
