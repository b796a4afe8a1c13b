"""Tracing a model's operators: the data-flow graph between layer records, and the time of every operator.

A run under :class:`_OpTracer` records every dispatched aten operator (views and unrecorded operators included):
which tensor storages it reads and writes and, when asked, its time. :func:`align` matches the layer records (the
recorded subsequence of those operators) to the events, and :func:`record_parents` follows storages through views
and unrecorded operators to tell which record reads the output of which: the data-flow graph G3 needs.

Times are kernel times as eager PyTorch runs them, without the Python overhead of the tracer itself; on CUDA each
operator is bracketed by synchronisations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from profilers.layers import storage_key

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from torch import nn

    from profilers.layers import LayerRecord

__all__ = ["OperatorEvent", "align", "as_inputs", "record_parents", "synchronizer", "trace"]


@dataclass
class OperatorEvent:
    """One dispatched operator: its name, the storages it reads and writes, and how long it took."""

    op: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    seconds: float


def _storage_keys(tree: Any) -> tuple[int, ...]:
    keys = []
    for item in tree_flatten(tree)[0]:
        if isinstance(item, torch.Tensor):
            key = storage_key(item)
            if key:
                keys.append(key)
    return tuple(keys)


class _OpTracer(TorchDispatchMode):
    """Records every dispatched aten operator: what storage it reads and writes, and its time."""

    def __init__(self, synchronize: Callable[[], None] | None) -> None:
        super().__init__()
        self.synchronize = synchronize
        self.events: list[OperatorEvent] = []

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self.synchronize is not None:
            self.synchronize()
        start = time.perf_counter()
        out = func(*args, **kwargs)
        if self.synchronize is not None:
            self.synchronize()
        seconds = time.perf_counter() - start
        self.events.append(OperatorEvent(str(func), _storage_keys((args, kwargs)), _storage_keys(out), seconds))
        return out


def trace(
    model: nn.Module, args: tuple[torch.Tensor, ...], synchronize: Callable[[], None] | None
) -> list[OperatorEvent]:
    """Run ``model`` once without gradients and return its operators in execution order.

    ``synchronize`` (CUDA) is called before and after every operator; the caller sets eval mode.
    """
    tracer = _OpTracer(synchronize)
    with torch.no_grad(), tracer:
        model(*args)
    return tracer.events


def align(records: Sequence[LayerRecord], events: Sequence[OperatorEvent]) -> list[int]:
    """Index of the event of each record: records are the recorded subsequence of the executed operators."""
    matches: list[int] = []
    j = 0
    for i, record in enumerate(records):
        while j < len(events) and events[j].op != record.op:
            j += 1
        if j == len(events):
            raise ValueError(
                f"layers do not match a run of the model on these inputs: record {i} ({record.name!r}, "
                f"{record.op}) has no matching operator; pass layers collected from the same model and inputs"
            )
        matches.append(j)
        j += 1
    return matches


def record_parents(events: Sequence[OperatorEvent], matches: Sequence[int]) -> list[frozenset[int]]:
    """For each record, the records whose outputs it reads (through views and unrecorded operators)."""
    record_of = {event_index: i for i, event_index in enumerate(matches)}
    producers: dict[int, frozenset[int]] = {}
    parents: list[frozenset[int]] = [frozenset()] * len(matches)
    for j, event in enumerate(events):
        deps: frozenset[int] = frozenset().union(*(producers.get(k, frozenset()) for k in event.reads))
        i = record_of.get(j)
        if i is not None:
            parents[i] = deps
            for key in event.writes:
                producers[key] = frozenset({i})
        else:
            for key in event.writes:
                if key not in event.reads:  # a fresh tensor from an unrecorded operator passes its inputs on
                    producers[key] = deps
    return parents


def as_inputs(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The model's positional inputs as a non-empty tuple of tensors; ``ValueError`` otherwise."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return inputs
    raise ValueError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {type(inputs).__name__}")


def synchronizer(device: str, args: tuple[torch.Tensor, ...]) -> Callable[[], None] | None:
    """What to call around each timed operator on ``device`` (``None`` on the CPU); checks the inputs are there."""
    target = torch.device(device) if device in {"cpu", "cuda"} or device.startswith("cuda:") else None
    if target is None:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    for t in args:
        if t.device.type != target.type:
            raise ValueError(f"inputs are on {t.device} but device={device!r}: move model and inputs there first")
    if target.type == "cuda":
        index = target.index

        def synchronize() -> None:
            torch.cuda.synchronize(index)

        return synchronize
    return None
