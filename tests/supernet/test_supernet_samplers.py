"""Path samplers: reproducible, resumable, within budget, strictly fair."""

from __future__ import annotations

import io
from collections import Counter
from typing import ClassVar

import pytest
import torch
from torch import nn

from search_spaces import Architecture, SearchSpace, SpaceConfig
from supernet import BudgetSampler, FairSampler, TrainConfig, UniformSampler, make_path_sampler


class _Mixed(SearchSpace):
    """A test space whose labels have 4, 3, 2 and 1 options (ints, strings and booleans)."""

    name: ClassVar[str] = "mixed"
    Config: ClassVar[type[SpaceConfig]] = SpaceConfig
    layouts: ClassVar[dict] = {"default": {"input_size": 4, "num_classes": 2}}
    default_layout: ClassVar[str] = "default"

    def choices(self):
        return {"a": (1, 2, 3, 4), "b": ("x", "y", "z"), "c": (True, False), "d": ("only",)}

    def build(self, arch):
        return nn.Identity()

    @classmethod
    def preset_table(cls):
        return {}


def _n_xception(arch: Architecture) -> float:
    return float(sum(v == "xception" for v in arch.values.values()))


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("make", [
    lambda s, seed: UniformSampler(s, seed),
    lambda s, seed: FairSampler(s, seed),
    lambda s, seed: BudgetSampler(s, _n_xception, 1, 4, seed),
])
def test_samplers_are_seeded_and_resume_exactly(small_space, make):
    a, b = make(small_space, 3), make(small_space, 3)
    assert [a.sample() for _ in range(7)] == [b.sample() for _ in range(7)]
    state = _roundtrip(a.state_dict())  # plain data: loads with weights_only
    expected = [a.sample() for _ in range(9)]
    c = make(small_space, 99)
    c.load_state_dict(state)
    assert [c.sample() for _ in range(9)] == expected
    d = make(small_space, 4)
    assert [d.sample() for _ in range(7)] != [make(small_space, 3).sample() for _ in range(7)]


def test_sampler_state_of_another_kind_is_refused(small_space):
    with pytest.raises(ValueError, match="'UniformSampler', not 'FairSampler'"):
        FairSampler(small_space).load_state_dict(UniformSampler(small_space).state_dict())


def test_uniform_sampler_covers_options_evenly(small_space):
    sampler = UniformSampler(small_space, 0)
    counts = Counter(sampler.sample()["layer_0"] for _ in range(2000))
    assert set(counts) == {"shuffle3", "shuffle5", "shuffle7", "xception"}
    assert all(400 < n < 600 for n in counts.values())


def test_budget_sampler_stays_inside_and_caches_costs(small_space):
    calls: Counter[str] = Counter()

    def cost(arch: Architecture) -> float:
        calls[arch.arch_id] += 1
        return _n_xception(arch)

    sampler = BudgetSampler(small_space, cost, low=2, high=3, seed=0, metric="xception_layers")
    archs = [sampler.sample() for _ in range(200)]
    assert all(2 <= _n_xception(a) <= 3 for a in archs)
    assert max(calls.values()) == 1  # each architecture costed once
    assert {_n_xception(a) for a in archs} == {2.0, 3.0}


def test_budget_sampler_one_sided(small_space):
    sampler = BudgetSampler(small_space, _n_xception, high=0, seed=1)
    assert all(_n_xception(sampler.sample()) == 0 for _ in range(20))


def test_budget_sampler_says_when_the_budget_admits_nothing(small_space):
    with pytest.raises(ValueError) as err:
        BudgetSampler(small_space, _n_xception, low=8, high=9, metric="xception_layers")
    message = str(err.value)
    assert "xception_layers in [8, 9]" in message
    assert "ranged from 0 to" in message


def test_budget_sampler_gives_up_after_bounded_tries(small_space):
    # Only the one architecture the probe happens to draw is inside the budget: 50 draws among 16384 paths
    # miss it, and the sampler must stop there instead of looping.
    first: list[Architecture] = []

    def cost(arch: Architecture) -> float:
        if not first:
            first.append(arch)
        return 0.0 if arch == first[0] else 10.0

    sampler = BudgetSampler(small_space, cost, low=0, high=1, probe=1, max_tries=50)
    with pytest.raises(RuntimeError, match=r"no architecture within the budget cost in \[0, 1\] in 50 draws"):
        sampler.sample()


def test_budget_sampler_argument_checks(small_space):
    with pytest.raises(ValueError, match="needs low, high or both"):
        BudgetSampler(small_space, _n_xception)
    with pytest.raises(ValueError, match="low 3 is above high 1"):
        BudgetSampler(small_space, _n_xception, 3, 1)
    with pytest.raises(ValueError, match="finite"):
        BudgetSampler(small_space, lambda a: float("nan"), 0, 1)


def test_fair_sampler_trains_every_option_exactly_once_per_group(small_space):
    sampler = FairSampler(small_space, seed=0)
    n = 4
    assert sampler.group_size == n
    for _group in range(25):
        archs = [sampler.sample() for _ in range(n)]
        for label in small_space.labels():
            assert Counter(a[label] for a in archs) == Counter({o: 1 for o in small_space.choices()[label]})
    # layers draw independent permutations: not all layers in lockstep
    archs = [sampler.sample() for _ in range(n)]
    assert len({tuple(a[label] for a in archs) for label in small_space.labels()}) > 1


def test_fair_sampler_resumes_mid_group(small_space):
    a = FairSampler(small_space, seed=1)
    first = [a.sample() for _ in range(2)]
    b = FairSampler(small_space, seed=42)
    b.load_state_dict(_roundtrip(a.state_dict()))
    rest = [b.sample() for _ in range(2)]
    for label in small_space.labels():
        assert sorted(x[label] for x in first + rest) == sorted(small_space.choices()[label])


def test_fair_sampler_with_unequal_option_counts():
    space = _Mixed()
    sampler = FairSampler(space, seed=0)
    assert sampler.group_size == 4
    for _group in range(10):
        archs = [sampler.sample() for _ in range(4)]
        assert Counter(a["a"] for a in archs) == Counter({1: 1, 2: 1, 3: 1, 4: 1})
        # 3 options in 4 slots: each once, one of them twice
        assert sorted(Counter(a["b"] for a in archs).values()) == [1, 1, 2]
        assert Counter(a["c"] for a in archs) == Counter({True: 2, False: 2})
        assert Counter(a["d"] for a in archs) == Counter({"only": 4})
        assert all(type(a["a"]) is int and type(a["c"]) is bool for a in archs)


def test_make_sampler_from_config(small_space):
    assert isinstance(make_path_sampler(small_space, TrainConfig()), UniformSampler)
    assert isinstance(make_path_sampler(small_space, TrainConfig(sampler="fair")), FairSampler)
    cfg = TrainConfig(sampler="budget", budget_high=2)
    with pytest.raises(ValueError, match="sampler 'budget' needs a cost function computing 'mult_adds'"):
        make_path_sampler(small_space, cfg)
    assert isinstance(make_path_sampler(small_space, cfg, _n_xception), BudgetSampler)
