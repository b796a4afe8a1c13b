"""Memory a profile will need, estimated before profiling: a 100,000-pixel input must be refused, not attempted.

The estimate runs the model once at batch 1 on a small probe input (at most ``PROBE_SIDE`` pixels a side), sums the
bytes of every leaf module's output, and scales by the pixel ratio and the batch size: activations of a
convolutional network grow with the input's area. Profiling keeps more than one forward pass alive (the counting
trace, the timing runs), hence ``_OVERHEAD``. A model that cannot run at the probe size is estimated from its
input alone (times ``_ROUGH_FACTOR``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.core.memory import FLOAT_BYTES, check_fits

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PROBE_SIDE", "check_input_fits", "estimate_profile_bytes"]

PROBE_SIDE = 64
_OVERHEAD = 3.0
_ROUGH_FACTOR = 64.0


def _leaf_output_bytes(model: nn.Module, probe: Any) -> float:
    import torch

    total = [0.0]

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(probe)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total[0] + probe.numel() * probe.element_size()


def estimate_profile_bytes(model: nn.Module, shape: tuple[int, ...]) -> float:
    """Bytes of activations profiling ``model`` on inputs of ``shape`` (batch, channels, height, width) needs."""
    import torch

    batch, channels, height, width = (int(v) for v in shape)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    side = max(height, width)
    probe_side = min(side, PROBE_SIDE)
    scale = (height * width) / (probe_side * probe_side)
    try:
        per_image = _leaf_output_bytes(model, torch.zeros(1, channels, probe_side, probe_side)) * scale
    except Exception:  # the model needs its own input size: judge from the input alone
        per_image = channels * height * width * FLOAT_BYTES * _ROUGH_FACTOR
    return params + _OVERHEAD * batch * per_image


def check_input_fits(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Refuse (exit 2) an input size or batch whose profile would not fit in memory."""
    batch, _, height, width = (int(v) for v in shape)
    if height * width <= PROBE_SIDE * PROBE_SIDE and batch <= 64:
        return  # small: nothing to fear, and no extra forward pass
    check_fits(
        estimate_profile_bytes(model, shape),
        f"profiling at input {height}x{width}, batch {batch}",
        "use a smaller --input-size or --batch",
    )
