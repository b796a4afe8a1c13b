"""Elastic layers as functions: one full-size weight, a slice of it per architecture (Once-for-All style).

Nothing here swaps a module's ``forward`` or stores an "active" sub-network: each function takes the full-size
module and the sizes of the slice, and returns the sliced tensors (views where possible) or the layer's output.
The same slicing functions serve the supernet's forward and its ``subnet_state_dict``, so the weights the
static network receives are by construction the ones the supernet computed with.

* width and expansion: the leading output / input channels of a convolution, batch norm or linear layer;
* kernel: the centre ``k x k`` of the largest kernel, optionally passed through Once-for-All's kernel
  transformation matrices (``KernelTransform``);
* resolution: ``resize_input``, the same bilinear resize the data path applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KernelTransform",
    "batch_norm_state",
    "centre_crop",
    "resize_input",
    "sliced_batch_norm",
]


def resize_input(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """``x`` (N, C, H, W) resized to ``resolution`` x ``resolution``; unchanged if it has that size already.

    Bilinear with ``align_corners=False``, anti-aliased when shrinking -- exactly what the data path
    (``nas.data``) does to images, so that data resized once per resolution and fed to an extracted subnet
    gives the same numbers as the raw batch fed to the supernet, which resizes here. Bilinear rather than
    bicubic: it never overshoots the input range, it is what the data path already used for the base
    size, and ONNX Runtime and every framework implement it alike.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if x.dim() != 4:
        raise ValueError(f"resize_input needs an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if x.shape[-2:] == (resolution, resolution):
        return x
    shrink = resolution < max(x.shape[-2:])
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrink)


def centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """The centre ``kernel x kernel`` of a (out, in, K, K) convolution weight (a view)."""
    full = weight.shape[-1]
    if kernel > full or kernel % 2 != full % 2:
        raise ValueError(f"cannot crop a {kernel}x{kernel} kernel from the centre of a {full}x{full} one")
    start = (full - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


class KernelTransform(nn.Module):
    """Once-for-All's kernel transformation (Cai et al. 2020, section 3.2): a smaller kernel is the centre of
    the next larger one times a learned ``k^2 x k^2`` matrix, shared by the channels of the layer.

    ``kernels`` are the sizes the layer can take. Going from the largest kernel to ``k`` crops and transforms
    step by step (7 -> 5 -> 3). The matrices start as the identity, so an untrained transform is the plain
    centre crop; they are parameters of the supernet and are folded into the static kernel at extraction.
    """

    def __init__(self, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.kernels = tuple(sorted(set(kernels), reverse=True))
        self.matrices = nn.ParameterDict(
            {f"{big}to{small}": nn.Parameter(torch.eye(small * small))
             for big, small in zip(self.kernels, self.kernels[1:])}
        )

    def forward(self, weight: torch.Tensor, kernel: int) -> torch.Tensor:
        """The ``kernel x kernel`` weight derived from the full-size ``weight`` (out, in, K, K)."""
        if kernel not in self.kernels:
            raise ValueError(f"kernel {kernel} is not one of this layer's sizes {list(self.kernels)}")
        current = weight
        for big, small in zip(self.kernels, self.kernels[1:]):
            if big <= kernel:
                break
            crop = centre_crop(current, small)
            flat = crop.reshape(-1, small * small) @ self.matrices[f"{big}to{small}"].t()
            current = flat.reshape(*crop.shape)
        return current


def sliced_batch_norm(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``norm`` applied to ``x``, whose C channels are the leading C of the full-size ``norm``.

    The running statistics are updated in place through views of the full buffers (so each channel's
    statistics live in one place), with the same momentum rule as ``nn.BatchNorm2d``: ``momentum``, or the
    cumulative average ``1 / num_batches_tracked`` when it is None.
    """
    channels = x.shape[1]
    factor = 0.0
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    use_batch = norm.training or norm.running_mean is None
    running_mean = None if norm.running_mean is None else norm.running_mean[:channels]
    running_var = None if norm.running_var is None else norm.running_var[:channels]
    weight = None if norm.weight is None else norm.weight[:channels]
    bias = None if norm.bias is None else norm.bias[:channels]
    return F.batch_norm(
        x,
        running_mean if not norm.training or norm.track_running_stats else None,
        running_var if not norm.training or norm.track_running_stats else None,
        weight,
        bias,
        use_batch,
        factor,
        norm.eps,
    )


def batch_norm_state(norm: nn.BatchNorm2d, channels: int, prefix: str) -> dict[str, torch.Tensor]:
    """The state dict entries of a ``BatchNorm2d(channels)`` sliced from the full-size ``norm``."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in (*norm.named_parameters(recurse=False), *norm.named_buffers(recurse=False)):
        state[f"{prefix}{name}"] = tensor if tensor.dim() == 0 else tensor[:channels]
    return state
