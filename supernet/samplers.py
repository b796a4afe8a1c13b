"""Path samplers: which architecture of the space trains at each supernet step.

Each sampler owns a seeded ``np.random.Generator`` and saves everything it needs to continue exactly where it
stopped in ``state_dict()`` (plain ints, strings, lists and dicts, so a checkpoint stays loadable with
``torch.load(weights_only=True)``).

* ``UniformSampler``: one architecture per step, uniform per label (SPOS, Guo et al. 2020).
* ``BudgetSampler``: uniform, restricted to architectures whose cost (any ``arch -> float`` the caller gives,
  e.g. mult-adds) lies in ``[low, high]`` (SPOS trains within FLOPs bins this way).
* ``FairSampler``: FairNAS strict fairness (Chu et al. 2021): in every group of ``n`` consecutive steps, each
  option of each layer is trained exactly once. In the ``efficientnet`` space it is fair over the labels
  drawn independently (``phi``, the ``(alpha, beta, gamma)`` triple and every stage label) and derives width,
  depth and resolution from them by the compound rule (``fair_labels``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from search_spaces import Architecture
from search_spaces.efficientnet import COEFFICIENTS, EfficientNetSpace

if TYPE_CHECKING:
    from search_spaces import SearchSpace

__all__ = ["BudgetSampler", "FairSampler", "PathSampler", "UniformSampler", "fair_labels"]


class PathSampler(abc.ABC):
    """Base of the samplers: a space and a generator seeded with ``seed``."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def sample(self) -> Architecture:
        """The architecture of the next training step."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "seed": self.seed, "rng": _plain(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"sampler state is for {state.get('kind')!r}, not {type(self).__name__!r}")
        self.seed = int(state["seed"])
        self.rng.bit_generator.state = state["rng"]


class UniformSampler(PathSampler):
    """Each option of each label with equal probability, independently per step (SPOS)."""

    def sample(self) -> Architecture:
        return self.space.sample(self.rng)


class BudgetSampler(PathSampler):
    """Uniform sampling among the architectures whose ``cost_fn(arch)`` lies in ``[low, high]``.

    Rejection sampling with a bound: at most ``max_tries`` draws per step. At construction ``probe`` draws
    check that the budget admits paths at all; if none falls inside, a ``ValueError`` names the budget and
    the range of costs found. Costs are cached by architecture id.
    """

    def __init__(
        self,
        space: SearchSpace,
        cost_fn: Callable[[Architecture], float],
        low: float | None = None,
        high: float | None = None,
        seed: int = 0,
        *,
        metric: str = "cost",
        probe: int = 300,
        max_tries: int = 10_000,
    ) -> None:
        super().__init__(space, seed)
        if low is None and high is None:
            raise ValueError("a budget sampler needs low, high or both; got neither")
        self.low = -math.inf if low is None else float(low)
        self.high = math.inf if high is None else float(high)
        if self.low > self.high:
            raise ValueError(f"budget low {self.low:g} is above high {self.high:g}; allowed: low <= high")
        if probe < 1 or max_tries < 1:
            raise ValueError(f"probe ({probe}) and max_tries ({max_tries}) must be >= 1")
        self.cost_fn = cost_fn
        self.metric = metric
        self.max_tries = max_tries
        self._costs: dict[str, float] = {}
        # The probe uses its own generator: whether or not it ran, the training draws are the same.
        probe_rng = np.random.default_rng([seed, 1])
        costs = [self.cost(space.sample(probe_rng)) for _ in range(probe)]
        self.observed = (min(costs), max(costs))
        if not any(self._inside(c) for c in costs):
            raise ValueError(
                f"the budget {self.describe_budget()} admits none of {probe} random architectures of space "
                f"{space.name!r}: their {metric} ranged from {self.observed[0]:.6g} to {self.observed[1]:.6g}"
            )

    def describe_budget(self) -> str:
        return f"{self.metric} in [{self.low:.6g}, {self.high:.6g}]"

    def cost(self, arch: Architecture) -> float:
        key = arch.arch_id
        if key not in self._costs:
            value = float(self.cost_fn(arch))
            if not math.isfinite(value):
                raise ValueError(f"cost function gave {value} for architecture {key}; allowed: a finite number")
            self._costs[key] = value
        return self._costs[key]

    def _inside(self, cost: float) -> bool:
        return self.low <= cost <= self.high

    def sample(self) -> Architecture:
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            if self._inside(self.cost(arch)):
                return arch
        raise RuntimeError(
            f"no architecture within the budget {self.describe_budget()} in {self.max_tries} draws "
            f"({self.metric} seen so far: {min(self._costs.values()):.6g} to {max(self._costs.values()):.6g}); "
            "widen the budget"
        )


class FairSampler(PathSampler):
    """Strict fairness (FairNAS): groups of ``n`` steps in which every option of every layer trains once.

    At the start of each group every label draws an independent random permutation of its options; step
    ``k`` of the group takes the ``k``-th entry of each permutation. ``n`` is the largest option count. A
    label with fewer options ``m < n`` fills its ``n`` slots with ``n // m`` permutations of its options
    followed by ``n % m`` options drawn without replacement, so within a group each of its options trains
    ``n // m`` or ``n // m + 1`` times (exactly once each when all labels have ``n`` options, as in the
    ShuffleNet space).

    The labels it is fair over are ``fair_labels(space)``: every label of a space without constraints; in
    the ``efficientnet`` space only the labels drawn independently, the others following from them. In the
    nasnet space the operation labels set ``n``, so operations are strictly fair and input labels balanced
    (see ``supernet.nasnet``).
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.labels = fair_labels(space)
        self.group_size = max(len(options) for options in self.labels.values())
        self._queue: list[dict[str, int]] = []  # option indices of the remaining steps of the group

    def _new_group(self) -> list[dict[str, int]]:
        n = self.group_size
        columns: dict[str, list[int]] = {}
        for label, options in self.labels.items():
            m = len(options)
            slots: list[int] = []
            for _ in range(n // m):
                slots.extend(int(i) for i in self.rng.permutation(m))
            slots.extend(int(i) for i in self.rng.permutation(m)[: n % m])
            columns[label] = slots
        return [{label: slots[k] for label, slots in columns.items()} for k in range(n)]

    def sample(self) -> Architecture:
        if not self._queue:
            self._queue = self._new_group()
        picks = self._queue.pop(0)
        values = {label: _native(self.labels[label][index]) for label, index in picks.items()}
        if isinstance(self.space, EfficientNetSpace):
            phi, triple = values.pop("phi"), values.pop(COEFFICIENTS)
            return self.space.compound(int(phi), str(triple), values)
        return self.space.validate(Architecture(space=self.space.name, values=values))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": [dict(step) for step in self._queue]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._queue = [{str(k): int(v) for k, v in step.items()} for step in state["queue"]]


def fair_labels(space: SearchSpace) -> dict[str, tuple[Any, ...]]:
    """The labels ``FairSampler`` draws, with their options: those that can be chosen independently.

    In the ``efficientnet`` space the compound-scaling choices are coupled: ``width_mult``, ``depth_mult``
    and ``resolution`` follow from ``phi`` and the ``(alpha, beta, gamma)`` triple, and ``scaling`` is
    ``"compound"`` for every point the space samples. Strict fairness over all of them is ill-defined (a
    width with its own count of options cannot be drawn apart from phi), so the sampler is fair over what
    ``space.suggest`` asks for -- ``phi``, the triple among the valid ones, every stage label -- and each
    architecture is ``space.compound(phi, triple, stage labels)``. The derived widths, depths and
    resolutions are then *not* uniform: phi = 0 gives the base network whatever the triple.
    """
    choices = space.choices()
    if isinstance(space, EfficientNetSpace):
        stage = {label: options for label, options in choices.items() if label.startswith("stage")}
        return {"phi": choices["phi"], COEFFICIENTS: choices[COEFFICIENTS], **stage}
    return dict(choices)


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain(value: Any) -> Any:
    """A copy made of dicts, lists, strings and Python ints only (numpy's state may hold numpy scalars)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
