"""The weight-sharing supernet of space ``efficientnet``: elastic slices of one full-size network (Once-for-All).

The supernet holds one static ``EfficientNet`` built by the space's own code at the *full size* the layout
allows: every stage as deep as the largest ``depth_mult`` makes it, every layer as wide as the largest
``width_mult`` makes it (per layer, with the space's channel rounding), every depthwise kernel as large as the
stage's largest option, every expansion layer as wide as the largest expansion, squeeze-and-excitation
everywhere. Its parameter and buffer names are therefore the static network's names. An architecture is a
slice of it:

* depth: the first ``d`` blocks of each stage;
* width: the leading output channels of every layer (and the leading input channels of the next), where the
  widths come from ``space.network_spec(arch)`` -- the very spec ``space.build`` builds from;
* kernel: the centre ``k x k`` of the largest kernel, or with ``kernel_transform=True`` Once-for-All's
  transformation matrices applied to it (off by default);
* expansion: the leading ``in * e`` channels of the expansion layer; expansion 1 has no expansion layer, as in
  the static network (the depthwise layer then takes the block input's leading channels);
* squeeze-and-excitation: on or off; on, the leading squeeze channels of its reduce and expand convolutions;
* resolution: the input is resized to ``space.resolution(arch)`` inside ``forward`` by ``resize_input`` (a
  batch already at that size is used as is).

Batch-norm affine parameters and running statistics are sliced with their channels. ``forward`` and
``subnet_state_dict`` slice through the same methods, so the extracted network computes what the supernet
computed. An unused slice of a weight receives a zero gradient; the optimiser's momentum and weight decay
still touch it, as in Once-for-All (``make_optimizer`` documents the trade-off).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.efficientnet import EfficientNet, EfficientNetSpace, NetworkSpec, StageSpec
from supernet._base import Supernet
from supernet._efficientnet_cost import mult_adds
from supernet._elastic import KernelTransform, batch_norm_state, centre_crop, resize_input, sliced_batch_norm

if TYPE_CHECKING:
    from search_spaces import Architecture, SearchSpace
    from search_spaces.efficientnet import BlockSpec

__all__ = ["EfficientNetSupernet", "full_network_spec"]


def full_network_spec(space: EfficientNetSpace) -> NetworkSpec:
    """The largest network of the layout: per layer the widest, per stage the deepest, largest kernel and
    expansion, squeeze-and-excitation on. Every architecture of ``space`` is a slice of it."""
    cfg = space.config
    choices = space.choices()
    base = cfg.base_network()
    depth = max(float(d) for d in choices["depth_mult"])
    scaled = [base.scaled(float(w), depth, cfg.channel_divisor) for w in choices["width_mult"]]
    stages = tuple(
        StageSpec(
            repeats=max(s.stages[i].repeats for s in scaled),
            kernel=max(int(k) for k in choices[f"stage{i + 1}_kernel"]),
            stride=stage.stride,
            expansion=max(int(e) for e in choices[f"stage{i + 1}_expansion"]),
            channels=max(s.stages[i].channels for s in scaled),
            se_ratio=cfg.se_ratio,
        )
        for i, stage in enumerate(base.stages)
    )
    return NetworkSpec(
        stem_channels=max(s.stem_channels for s in scaled),
        stem_stride=base.stem_stride,
        stages=stages,
        head_channels=max(s.head_channels for s in scaled),
    )


class EfficientNetSupernet(Supernet):
    """One full-size EfficientNet of an ``EfficientNetSpace``; each architecture runs a slice of it."""

    OPTIONS: ClassVar[frozenset[str]] = frozenset({"kernel_transform"})
    space: EfficientNetSpace

    def __init__(self, space: SearchSpace, *, kernel_transform: bool = False) -> None:
        if not isinstance(space, EfficientNetSpace):
            raise ValueError(f"EfficientNetSupernet needs an EfficientNetSpace, got {type(space).__name__}")
        super().__init__(space)
        self.space = space
        self.kernel_transform = bool(kernel_transform)
        self.full_spec = full_network_spec(space)
        cfg = space.config
        full = EfficientNet(self.full_spec, in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                            dropout=cfg.dropout)
        self.stem = full.stem
        self.stages = full.stages
        self.head = full.head
        self.pool = full.pool
        self.dropout = full.dropout
        self.classifier = full.classifier
        # Once-for-All kernel transformation matrices, one set per block (only with the option on).
        self.kernel_transforms = nn.ModuleDict()
        if self.kernel_transform:
            for i, stage in enumerate(self.full_spec.stages):
                kernels = tuple(int(k) for k in space.choices()[f"stage{i + 1}_kernel"])
                for j in range(stage.repeats):
                    self.kernel_transforms[f"{i}_{j}"] = KernelTransform(kernels)

    def options(self) -> dict[str, Any]:
        return {"kernel_transform": self.kernel_transform}

    def resolution(self, arch: Architecture | Mapping[str, Any]) -> int:
        """The input side ``arch`` runs at (``space.resolution``): what callers resize their data to."""
        return self.space.resolution(self.validate(arch))

    # forward ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, arch: Architecture | Mapping[str, Any]) -> torch.Tensor:
        arch = self.validate(arch)
        spec = self.space.network_spec(arch)
        x = resize_input(x, self.space.resolution(arch))
        x = self._conv_norm_act(self.stem, x, self._stem_weight(spec.stem_channels))
        for i, blocks in enumerate(spec.stage_blocks()):
            for j, block in enumerate(blocks):
                x = self._mbconv(i, j, block, x)
        x = self._conv_norm_act(self.head, x, self._pointwise(self.head, spec.head_channels, spec.out_channels))
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return F.linear(x, self.classifier.weight[:, : spec.head_channels], self.classifier.bias)

    def _mbconv(self, i: int, j: int, block: BlockSpec, x: torch.Tensor) -> torch.Tensor:
        body = self._body(i, j)
        mid = block.mid_channels
        out = x
        if block.expansion != 1:
            out = self._conv_norm_act(body["expand"], out, self._pointwise(body["expand"], mid, block.in_channels))
        out = self._conv_norm_act(body["depthwise"], out, self._depthwise_weight(i, j, mid, block.kernel), groups=mid)
        if block.se_channels > 0:
            out = self._squeeze_excite(body["se"], out, block.se_channels)
        out = self._conv_norm_act(body["project"], out, self._pointwise(body["project"], block.out_channels, mid))
        return x + out if block.residual else out

    @staticmethod
    def _conv_norm_act(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """A ``ConvNormAct`` of the full network run with a slice of its convolution weight."""
        conv = cast(nn.Conv2d, layer.conv)
        kernel = weight.shape[-1]
        x = F.conv2d(x, weight, None, conv.stride, kernel // 2, 1, groups)
        x = sliced_batch_norm(cast(nn.BatchNorm2d, layer.norm), x)
        act = getattr(layer, "act", None)
        return x if act is None else cast(nn.Module, act)(x)

    @staticmethod
    def _squeeze_excite(se: nn.Module, x: torch.Tensor, squeeze: int) -> torch.Tensor:
        reduce, expand = cast(nn.Conv2d, se.reduce), cast(nn.Conv2d, se.expand)
        channels = x.shape[1]
        s = cast(nn.Module, se.pool)(x)
        s = F.conv2d(s, reduce.weight[:squeeze, :channels], _bias(reduce)[:squeeze])
        s = cast(nn.Module, se.act)(s)
        s = F.conv2d(s, expand.weight[:channels, :squeeze], _bias(expand)[:channels])
        return x * cast(nn.Module, se.gate)(s)

    # the slices, shared by forward and subnet_state_dict ----------------------------------------
    def _body(self, i: int, j: int) -> dict[str, nn.Module]:
        """The layers of block ``j`` of stage ``i`` of the full network, by name (expand, depthwise, se, project)."""
        stage = cast(nn.Sequential, self.stages[i])
        return dict(cast(nn.Sequential, stage[j].body).named_children())

    def _stem_weight(self, channels: int) -> torch.Tensor:
        return cast(nn.Conv2d, self.stem.conv).weight[:channels]

    @staticmethod
    def _pointwise(layer: nn.Module, out_channels: int, in_channels: int) -> torch.Tensor:
        return cast(nn.Conv2d, layer.conv).weight[:out_channels, :in_channels]

    def _depthwise_weight(self, i: int, j: int, channels: int, kernel: int) -> torch.Tensor:
        weight = cast(nn.Conv2d, self._body(i, j)["depthwise"].conv).weight[:channels]
        if self.kernel_transform:
            return cast(KernelTransform, self.kernel_transforms[f"{i}_{j}"])(weight, kernel)
        return centre_crop(weight, kernel)

    # extraction ---------------------------------------------------------------------------------
    def subnet_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        arch = self.validate(arch)
        spec = self.space.network_spec(arch)
        state: dict[str, torch.Tensor] = {}
        with torch.no_grad():  # the kernel transformation computes new tensors; no graph for them
            state.update(_layer_state("stem.", self.stem, self._stem_weight(spec.stem_channels)))
            for i, blocks in enumerate(spec.stage_blocks()):
                for j, block in enumerate(blocks):
                    state.update(self._mbconv_state(i, j, block))
            head = self._pointwise(self.head, spec.head_channels, spec.out_channels)
            state.update(_layer_state("head.", self.head, head))
            state["classifier.weight"] = self.classifier.weight[:, : spec.head_channels]
            state["classifier.bias"] = self.classifier.bias
        return state

    def _mbconv_state(self, i: int, j: int, block: BlockSpec) -> dict[str, torch.Tensor]:
        body = self._body(i, j)
        prefix = f"stages.{i}.{j}.body."
        mid = block.mid_channels
        state: dict[str, torch.Tensor] = {}
        if block.expansion != 1:
            state.update(_layer_state(prefix + "expand.", body["expand"],
                                      self._pointwise(body["expand"], mid, block.in_channels)))
        state.update(_layer_state(prefix + "depthwise.", body["depthwise"],
                                  self._depthwise_weight(i, j, mid, block.kernel)))
        if block.se_channels > 0:
            se = body["se"]
            reduce, expand = cast(nn.Conv2d, se.reduce), cast(nn.Conv2d, se.expand)
            squeeze = block.se_channels
            state[prefix + "se.reduce.weight"] = reduce.weight[:squeeze, :mid]
            state[prefix + "se.reduce.bias"] = _bias(reduce)[:squeeze]
            state[prefix + "se.expand.weight"] = expand.weight[:mid, :squeeze]
            state[prefix + "se.expand.bias"] = _bias(expand)[:mid]
        state.update(_layer_state(prefix + "project.", body["project"],
                                  self._pointwise(body["project"], block.out_channels, mid)))
        return state

    # sizes --------------------------------------------------------------------------------------
    def mult_adds(self, arch: Architecture | Mapping[str, Any]) -> int:
        """Mult-adds of ``arch`` at its resolution, counted from its spec (convolutions and classifier)."""
        arch = self.validate(arch)
        cfg = self.space.config
        return mult_adds(self.space.network_spec(arch), self.space.resolution(arch), cfg.in_channels,
                         cfg.num_classes)

    def extreme_architectures(self) -> tuple[Architecture, Architecture]:
        """(smallest, largest) of the compound points the space samples, by mult-adds.

        The smallest takes every stage's smallest kernel and expansion without SE, the largest every stage's
        largest kernel and expansion with SE; among the (phi, triple) points of the grid each takes the one of
        fewest / most mult-adds at its own resolution (ties: the first in grid order). Custom points (the
        published B1-B7) are not sampled, so they are not candidates.
        """
        stage_labels = [label for label in self.space.choices() if label.startswith("stage")]
        choices = self.space.choices()
        low = {label: min(choices[label]) for label in stage_labels}
        high = {label: max(choices[label]) for label in stage_labels}
        points = [(phi, triple) for phi in self.space.config.phi_grid for triple in self.space.coefficients()]
        smallest = min((self.space.compound(phi, t, low) for phi, t in points), key=self.mult_adds)
        largest = max((self.space.compound(phi, t, high) for phi, t in points), key=self.mult_adds)
        return smallest, largest


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is None:
        raise ValueError("squeeze-and-excitation convolutions have biases")
    return conv.bias


def _layer_state(prefix: str, layer: nn.Module, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """State of a static ``ConvNormAct``: its sliced convolution weight and batch norm."""
    norm = cast(nn.BatchNorm2d, layer.norm)
    return {f"{prefix}conv.weight": weight, **batch_norm_state(norm, weight.shape[0], f"{prefix}norm.")}
