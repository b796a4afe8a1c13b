"""Layers of the NASNet supernet whose input width depends on the architecture, and drop path.

A cell's output concatenates the states no block read (plus the layout's extra states), so its width is
``filters x (number of concatenated states)`` and changes with the architecture. The layers that read it --
the next cells' input adjustments and the classifier -- hold one weight group per *state slot* of the cell
(``2 + num_blocks`` groups of ``filters`` input channels: the widest concatenation there can be) and apply
the groups of the states actually concatenated, in state order (ENAS, Pham et al. 2018, does the same).

Each group is its own ``nn.Parameter`` rather than a slice of one wide tensor: the groups of states a step
did not concatenate get no gradient at all, so SGD leaves their momentum and weight decay alone, exactly as
it does for the operations of paths not taken (see ``supernet._optim.make_optimizer``).

``static_state(groups)`` gives the state dict of the static layer the space builds for that concatenation
(``ActConvNorm``, ``ReLU -> FactorizedReduce`` or ``nn.Linear``), under that layer's own key names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GroupedActConvNorm", "GroupedLinear", "GroupedReduce", "drop_path"]

NormLayer = Callable[[int], nn.Module]


def _split(weight: torch.Tensor, group_width: int) -> nn.ParameterList:
    """One parameter per input-channel group of ``weight`` (dim 1), initialised as the wide layer was."""
    return nn.ParameterList([nn.Parameter(w.detach().clone()) for w in weight.split(group_width, dim=1)])


def _gather(groups_of: nn.ParameterList, groups: Sequence[int]) -> torch.Tensor:
    """The weight of the concatenation of ``groups`` (input channels in that order)."""
    if len(groups) == 1:
        return groups_of[groups[0]]
    return torch.cat([groups_of[g] for g in groups], dim=1)


def _check_groups(groups: Sequence[int], num_groups: int) -> None:
    if not groups or any(not 0 <= g < num_groups for g in groups):
        raise ValueError(f"channel groups {list(groups)} are not allowed; allowed: a non-empty subset of 0..{num_groups - 1}")


class GroupedActConvNorm(nn.Module):
    """ReLU -> 1x1 convolution -> BN over a chosen concatenation of channel groups.

    The static counterpart is ``ActConvNorm(len(groups) * group_width, out_channels, 1)``: an
    ``nn.Sequential`` of activation (``0``), convolution (``1``) and norm (``2``); ``static_state`` uses those
    keys. The norm is shared by every concatenation (it normalises the output channels, which do not change).
    """

    def __init__(
        self, group_width: int, num_groups: int, out_channels: int, *, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self.group_width = group_width
        self.num_groups = num_groups
        wide = nn.Conv2d(group_width * num_groups, out_channels, 1, bias=False)
        self.weights = _split(wide.weight, group_width)
        self.norm = norm_layer(out_channels)

    def forward(self, x: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        return self.norm(F.conv2d(F.relu(x), _gather(self.weights, groups)))

    def static_state(self, groups: Sequence[int]) -> dict[str, torch.Tensor]:
        _check_groups(groups, self.num_groups)
        state = {"1.weight": _gather(self.weights, groups).detach()}
        state.update({f"2.{k}": v for k, v in self.norm.state_dict().items()})
        return state


class GroupedReduce(nn.Module):
    """ReLU -> factorised reduction (stride 2) over a chosen concatenation of channel groups.

    Two 1x1 convolutions read the even pixels and, shifted by one, the odd pixels; their outputs
    (``out_channels // 2`` and the rest) are concatenated and normalised, as ``FactorizedReduce`` does. The
    static counterpart is ``nn.Sequential(ReLU(), FactorizedReduce(in, out, 2))``: keys ``1.conv1.weight``,
    ``1.conv2.weight`` and ``1.norm.*``.
    """

    def __init__(
        self, group_width: int, num_groups: int, out_channels: int, *, norm_layer: NormLayer = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        if out_channels < 2:
            raise ValueError(f"factorized reduction needs out_channels >= 2 to split in two paths, got {out_channels}")
        self.group_width = group_width
        self.num_groups = num_groups
        half = out_channels // 2
        wide = group_width * num_groups
        self.weights1 = _split(nn.Conv2d(wide, half, 1, bias=False).weight, group_width)
        self.weights2 = _split(nn.Conv2d(wide, out_channels - half, 1, bias=False).weight, group_width)
        self.norm = norm_layer(out_channels)

    def forward(self, x: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        x = F.relu(x)
        path1 = F.conv2d(F.avg_pool2d(x, 1, 2), _gather(self.weights1, groups))
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        path2 = F.conv2d(F.avg_pool2d(shifted, 1, 2), _gather(self.weights2, groups))
        return self.norm(torch.cat((path1, path2), dim=1))

    def static_state(self, groups: Sequence[int]) -> dict[str, torch.Tensor]:
        _check_groups(groups, self.num_groups)
        state = {
            "1.conv1.weight": _gather(self.weights1, groups).detach(),
            "1.conv2.weight": _gather(self.weights2, groups).detach(),
        }
        state.update({f"1.norm.{k}": v for k, v in self.norm.state_dict().items()})
        return state


class GroupedLinear(nn.Module):
    """A linear layer over a chosen concatenation of feature groups (the classifier after pooling).

    The static counterpart is ``nn.Linear(len(groups) * group_width, out_features)``; the bias is shared.
    """

    def __init__(self, group_width: int, num_groups: int, out_features: int) -> None:
        super().__init__()
        self.group_width = group_width
        self.num_groups = num_groups
        wide = nn.Linear(group_width * num_groups, out_features)
        self.weights = _split(wide.weight, group_width)
        # nn.Linear draws its bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of the widest input.
        self.bias = nn.Parameter(wide.bias.detach().clone())

    def forward(self, x: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
        return F.linear(x, _gather(self.weights, groups), self.bias)

    def static_state(self, groups: Sequence[int]) -> dict[str, torch.Tensor]:
        _check_groups(groups, self.num_groups)
        return {"weight": _gather(self.weights, groups).detach(), "bias": self.bias.detach()}


def drop_path(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    NASNet's drop path (Zoph et al. 2018; reference ``nasnet_utils.drop_path``): one Bernoulli draw per sample
    from torch's default generator, so a training run that saves and restores that generator's state replays
    the same masks.
    """
    if rate <= 0.0:
        return x
    if rate >= 1.0:
        raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
    keep = 1.0 - rate
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask
