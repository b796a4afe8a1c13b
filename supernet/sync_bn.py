"""Synchronised batch normalisation for every device: statistics of the global batch, across processes.

``torch.nn.SyncBatchNorm`` runs on GPUs only (it raises for a CPU tensor), and DetNAS-style training
synchronises batch norm whatever the device. On CUDA the trainer uses PyTorch's; elsewhere (CPU with gloo)
:class:`GlobalBatchNorm2d` does the same computation: per channel, the sum, the sum of squares and the count
of the local batch are all-reduced in one differentiable collective (its backward all-reduces the gradients
of the statistics), so forward and backward equal those of one process holding the whole
global batch. Running statistics are updated from the global mean and the unbiased global variance, exactly as
``nn.BatchNorm2d`` does for one batch. It subclasses ``nn.BatchNorm2d``: state dicts are unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GlobalBatchNorm2d", "convert_to_global_batch_norm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes of the group; the gradient of every process's copy is summed the same way."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the batch over all processes of the group."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        x = input.float()
        local = torch.cat(
            [
                x.sum(dim=(0, 2, 3)),
                (x * x).sum(dim=(0, 2, 3)),
                torch.full((1,), float(x.numel() // channels), dtype=x.dtype, device=x.device),
            ]
        )
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)  # biased, as BN normalises
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp_min(1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach().to(self.running_var.dtype), alpha=factor)
        shape = (1, channels, 1, 1)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_to_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` (in place) by a :class:`GlobalBatchNorm2d` holding its tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(next(iter(child.buffers()), torch.empty(0)).device)
            synced.load_state_dict(child.state_dict())
            if child.affine:  # keep the very parameter objects: optimiser state and DDP buckets refer to them
                synced.weight, synced.bias = child.weight, child.bias
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            convert_to_global_batch_norm(child)
    return module
