"""Collecting layer records: run a model once under a ``TorchDispatchMode`` that sees every executed aten operator.

The model runs once in eval mode under ``torch.no_grad``; forward pre/post hooks on every submodule keep a stack of
module paths, so each operator is attributed to the innermost module running it. Its kind, mult-adds and element-wise
work come from :func:`profilers.layers._costs.operator_costs`; its memory access is counted here:

* **Views** (``view``, ``reshape`` of a contiguous tensor, ``transpose``, ``permute``, ``split``, ``chunk``,
  ``slice``, ``flatten``, ``expand`` ...) move no memory and cost nothing: no record. A ``reshape`` or
  ``contiguous`` that has to copy shows up as a ``clone`` (kind ``"copy"``): channel shuffle
  (view - transpose - contiguous - view) is exactly one copy.
* ``memory_access_bytes`` (ShuffleNetV2's memory access cost) = bytes of every tensor the operator reads
  (feature maps, weights, biases and buffers such as batch norm's running statistics) + bytes of the primary
  output it writes. Broadcast inputs count their distinct elements only. Secondary outputs (max pooling's
  indices, batch/layer norm's saved statistics) are not counted: they are bookkeeping, not feature maps.
  An in-place operator (``relu_``) reads and writes its tensor; ``copy_`` reads its source and writes its
  destination. For a 1x1 convolution with ``c1`` in and ``c2`` out channels on an ``h x w`` map (batch 1, no
  bias) this is exactly ``(h*w*(c1 + c2) + c1*c2/groups) * element_size``.
* **Batch norm in eval mode** reads its input, its weight, bias, running mean and running variance (``4*C``
  values) and writes its output. ``params`` counts only the parameters (weight and bias, ``2*C``), as
  ``count_params`` does; the two running buffers are included in ``memory_access_bytes`` because they are read.
* Factory operators (``empty``, ``zeros`` ...) and operators without tensor inputs are not recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from profilers.layers._costs import operator_costs
from profilers.layers._operators import SKIPPED_OPS
from profilers.layers._records import LayerRecord

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["collect_layers", "storage_key"]


def storage_key(t: torch.Tensor) -> int:
    """The address of ``t``'s storage (``0`` when it has none): tensors sharing memory share the key."""
    try:
        return int(t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return 0


def _is_view_op(func: torch._ops.OpOverload) -> bool:
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _distinct_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t``: broadcast (stride 0) dimensions count once."""
    count = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride != 0:
            count *= size
        elif size == 0:
            count = 0
    return count * t.element_size()


class _LayerRecorder(TorchDispatchMode):
    """Dispatch mode turning every executed, non-view aten operator into a :class:`LayerRecord`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.records: list[LayerRecord] = []
        self.module_stack: list[tuple[str, nn.Module]] = []
        self._parameter_storages: set[int] = set()
        self._state_storages: set[int] = set()
        for p in model.parameters():
            key = storage_key(p)
            if key:
                self._parameter_storages.add(key)
                self._state_storages.add(key)
        for b in model.buffers():
            key = storage_key(b)
            if key:
                self._state_storages.add(key)

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _name(self, short: str) -> tuple[str, nn.Module | None]:
        """The record's name (the leaf module's path, or ``path/op`` inside a composite module) and module."""
        path, module = self.module_stack[-1] if self.module_stack else ("", None)
        is_leaf = module is not None and next(iter(module.children()), None) is None
        if path and is_leaf:
            return path, module
        if path:
            return f"{path}/{short}", module
        return short, module

    def _record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        short = func.overloadpacket.__name__
        if short in SKIPPED_OPS or _is_view_op(func):
            return
        flat_args, _ = tree_flatten((args, kwargs))
        tensor_args = [a for a in flat_args if isinstance(a, torch.Tensor)]
        flat_out, _ = tree_flatten(out)
        outputs = [o for o in flat_out if isinstance(o, torch.Tensor)]
        if not tensor_args or not outputs:
            return
        primary = outputs[0]

        # copy_(dst, src): the destination is written, not read.
        read = tensor_args[1:] if short == "copy_" else tensor_args
        params = 0
        memory = _distinct_bytes(primary)
        input_shapes: list[tuple[int, ...]] = []
        for t in read:
            memory += _distinct_bytes(t)
            key = storage_key(t)
            if key and key in self._parameter_storages:
                params += t.numel()
            if not (key and key in self._state_storages):
                input_shapes.append(tuple(int(s) for s in t.shape))

        kind, mult_adds, elementwise, conv = operator_costs(func, args, tensor_args, primary, params)
        name, module = self._name(short)
        self.records.append(
            LayerRecord(
                name=name,
                kind=kind,
                op=str(func),
                module_type="" if module is None else type(module).__name__,
                input_shapes=tuple(input_shapes),
                output_shape=tuple(int(s) for s in primary.shape),
                params=int(params),
                mult_adds=int(mult_adds),
                elementwise_ops=int(elementwise),
                memory_access_bytes=int(memory),
                conv=conv,
            )
        )


def _module_hooks(recorder: _LayerRecorder, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    handles = []

    def make_pre(path: str) -> Callable[[nn.Module, Any], None]:
        def pre(module: nn.Module, _inputs: Any) -> None:
            recorder.module_stack.append((path, module))

        return pre

    def post(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        if recorder.module_stack:
            recorder.module_stack.pop()

    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(make_pre(path)))
        handles.append(module.register_forward_hook(post))
    return handles


def collect_layers(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> list[LayerRecord]:
    """Run ``model`` once (eval mode, no grad) on ``inputs`` and return one record per executed operator.

    Works on any ``nn.Module``; the training flags of every submodule are restored afterwards.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(inputs, torch.Tensor):
        args: tuple[torch.Tensor, ...] = (inputs,)
    elif isinstance(inputs, tuple) and all(isinstance(t, torch.Tensor) for t in inputs):
        args = inputs
    else:
        raise ValueError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {type(inputs).__name__}")
    saved_modes = [(module, module.training) for module in model.modules()]
    recorder = _LayerRecorder(model)
    handles = _module_hooks(recorder, model)
    try:
        model.eval()
        with torch.no_grad(), recorder:
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in saved_modes:
            module.training = mode
    return recorder.records
