"""Space `shufflenet`: the ShuffleNetV2 choice-block space of SPOS and DetNAS.

Each choice layer picks one of Shuffle 3x3, Shuffle 5x5, Shuffle 7x7 and Xception blocks. The first layer of
each stage has stride 2 and widens the network; the stage layout is configuration, not search.
Labels are ``layer_0`` ... ``layer_{L-1}`` in network order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import torch
from pydantic import field_validator, model_validator
from torch import nn

from search_spaces._arch import Architecture
from search_spaces._blocks import NETWORK_INPUT, BlockChain, LatencyBlock, classifier_head, strided
from search_spaces._shuffle_blocks import BLOCK_KINDS, BlockSpec, ShuffleBlock, conv_bn
from search_spaces._space import Preset, SearchSpace, SpaceConfig

__all__ = ["BlockSpec", "ShuffleBlock", "ShuffleNetConfig", "ShuffleNetSpace", "ShuffleNetV2", "decode_blocks"]


class ShuffleNetConfig(SpaceConfig):
    """Stage layout of a ShuffleNetV2-style network."""

    stem_channels: int
    stem_stride: int = 2
    stem_pool: bool = True  # 3x3 max pooling with stride 2 after the stem (ImageNet layouts)
    stage_channels: tuple[int, ...]
    stage_repeats: tuple[int, ...]
    head_channels: int
    dropout: float = 0.0
    options: tuple[str, ...] = tuple(BLOCK_KINDS)

    @field_validator("options")
    @classmethod
    def _known_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [o for o in value if o not in BLOCK_KINDS]
        if bad or not value:
            raise ValueError(f"unknown block option(s) {bad}; allowed: {list(BLOCK_KINDS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ShuffleNetConfig:
        if len(self.stage_channels) != len(self.stage_repeats) or not self.stage_channels:
            raise ValueError(
                f"stage_channels {self.stage_channels} and stage_repeats {self.stage_repeats} "
                "must be non-empty and of the same length"
            )
        if any(r < 1 for r in self.stage_repeats):
            raise ValueError(f"stage_repeats must all be >= 1, got {self.stage_repeats}")
        widths = (self.stem_channels, *self.stage_channels)
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            if b <= a or b % 2:
                raise ValueError(f"stage {i} width {b} must be even and wider than the previous width {a}")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


def _imagenet(stages: tuple[int, int, int], head: int, dropout: float = 0.0) -> dict[str, Any]:
    return {
        "input_size": 224,
        "num_classes": 1000,
        "in_channels": 3,
        "stem_channels": 24,
        "stage_channels": stages,
        "stage_repeats": (4, 8, 4),
        "head_channels": head,
        "dropout": dropout,
    }


# ShuffleNetV2 paper, Table 5 (output channels per stage; conv5 width).
_V2_WIDTHS: dict[str, dict[str, Any]] = {
    "0.5x": _imagenet((48, 96, 192), 1024),
    "1.0x": _imagenet((116, 232, 464), 1024),
    "1.5x": _imagenet((176, 352, 704), 1024),
    "2.0x": _imagenet((244, 488, 976), 2048, dropout=0.2),
}

_LAYOUTS: dict[str, dict[str, Any]] = {
    # The SPOS / DetNAS ImageNet supernet: 20 choice layers in 4 stages.
    "spos-imagenet": {
        "input_size": 224,
        "num_classes": 1000,
        "in_channels": 3,
        "stem_channels": 16,
        "stem_pool": False,  # SPOS downsamples 32x: stem stride 2 and four stride-2 stages
        "stage_channels": (64, 160, 320, 640),
        "stage_repeats": (4, 4, 8, 4),
        "head_channels": 1024,
        "dropout": 0.1,
    },
    **{f"shufflenetv2-{w}": cfg for w, cfg in _V2_WIDTHS.items()},
    # For 16-32 pixel inputs (the embedded default, digits at 16x16): no stem stride, no stem pooling,
    # three stages (16 -> 8 -> 4 -> 2 pixels), 7 choice layers: 4**7 = 16384 architectures.
    "small": {
        "input_size": 16,
        "num_classes": 10,
        "in_channels": 1,
        "stem_channels": 16,
        "stem_stride": 1,
        "stem_pool": False,
        "stage_channels": (32, 64, 128),
        "stage_repeats": (2, 3, 2),
        "head_channels": 256,
    },
}

# SPOS's published block-search result (Guo et al. 2020; block indices 0..3 = shuffle3, shuffle5, shuffle7,
# xception): [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3], reported at 319M FLOPs.
_SPOS_BLOCKS = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)


def decode_blocks(config: ShuffleNetConfig, arch: Architecture | Mapping[str, Any]) -> tuple[BlockSpec, ...]:
    """The block table of an architecture: a pure function of the configuration and the choices."""
    specs: list[BlockSpec] = []
    width = config.stem_channels
    layer = 0
    for channels, repeats in zip(config.stage_channels, config.stage_repeats):
        for r in range(repeats):
            stride = 2 if r == 0 else 1
            specs.append(BlockSpec(str(arch[f"layer_{layer}"]), width, channels, stride))
            width = channels
            layer += 1
    return tuple(specs)


class ShuffleNetV2(nn.Module):
    """A static ShuffleNetV2-style network: stem, choice blocks, 1x1 head conv, pooling, classifier."""

    def __init__(self, config: ShuffleNetConfig, blocks: tuple[BlockSpec, ...]) -> None:
        super().__init__()
        stem: list[nn.Module] = conv_bn(config.in_channels, config.stem_channels, 3, config.stem_stride)
        if config.stem_pool:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*(ShuffleBlock(spec) for spec in blocks))
        self.head = nn.Sequential(*conv_bn(config.stage_channels[-1], config.head_channels, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_channels, config.num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return self.classifier(x)


def _stem(config: ShuffleNetConfig) -> nn.Sequential:
    """The layers of ``ShuffleNetV2.stem``."""
    layers = conv_bn(config.in_channels, config.stem_channels, 3, config.stem_stride)
    if config.stem_pool:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


def _head(config: ShuffleNetConfig) -> nn.Sequential:
    """The layers after ``ShuffleNetV2.blocks``: 1x1 head conv, pooling, dropout, classifier."""
    head = conv_bn(config.stage_channels[-1], config.head_channels, 1)
    return classifier_head(head, config.head_channels, config.num_classes, config.dropout, bias=False)


class ShuffleNetSpace(SearchSpace):
    name: ClassVar[str] = "shufflenet"
    description: ClassVar[str] = (
        "ShuffleNetV2 choice blocks (SPOS/DetNAS): each layer picks Shuffle 3x3/5x5/7x7 or Xception"
    )
    Config: ClassVar[type[SpaceConfig]] = ShuffleNetConfig
    layouts: ClassVar[Mapping[str, Mapping[str, Any]]] = _LAYOUTS
    default_layout: ClassVar[str] = "spos-imagenet"

    @property
    def layout(self) -> ShuffleNetConfig:
        assert isinstance(self.config, ShuffleNetConfig)
        return self.config

    def num_layers(self) -> int:
        return sum(self.layout.stage_repeats)

    def choices(self) -> dict[str, tuple[str, ...]]:  # type: ignore[override]
        return {f"layer_{i}": tuple(self.layout.options) for i in range(self.num_layers())}

    def decode(self, arch: Architecture | Mapping[str, Any]) -> tuple[BlockSpec, ...]:
        return decode_blocks(self.layout, self.validate(arch))

    def build(self, arch: Architecture | Mapping[str, Any]) -> ShuffleNetV2:
        return ShuffleNetV2(self.layout, self.decode(arch))

    def latency_blocks(self, arch: Architecture | Mapping[str, Any]) -> list[LatencyBlock]:
        """Stem, one block per choice layer (keyed by kind, widths and stride), head with the classifier."""
        cfg = self.layout
        chain = BlockChain((cfg.in_channels, cfg.input_size, cfg.input_size))
        side = strided(cfg.input_size, cfg.stem_stride)
        if cfg.stem_pool:
            side = strided(side, 2)
        chain.add(
            f"shufflenet/stem_c{cfg.in_channels}-{cfg.stem_channels}_s{cfg.stem_stride}"
            + ("_pool" if cfg.stem_pool else ""),
            partial(_stem, cfg),
            (cfg.stem_channels, side, side),
            sources=(NETWORK_INPUT,),
        )
        for spec in self.decode(arch):
            side = strided(side, spec.stride)
            chain.add(
                f"shufflenet/{spec.kind}_c{spec.in_channels}-{spec.out_channels}_s{spec.stride}",
                partial(ShuffleBlock, spec),
                (spec.out_channels, side, side),
            )
        width = cfg.stage_channels[-1]
        key = f"shufflenet/head_c{width}-{cfg.head_channels}_n{cfg.num_classes}"
        chain.add(key, partial(_head, cfg), (cfg.num_classes,))
        return chain.blocks

    @classmethod
    def preset_table(cls) -> dict[str, Preset]:
        table: dict[str, Preset] = {}
        # ShuffleNetV2 paper, Table 5: params and FLOPs (one multiply-add = one FLOP) at 224x224.
        published = {"0.5x": (1.4e6, 41e6), "1.0x": (2.3e6, 146e6), "1.5x": (3.5e6, 299e6), "2.0x": (7.4e6, 591e6)}
        for width, (params, mult_adds) in published.items():
            table[f"shufflenetv2-{width}"] = Preset(
                config={"layout": f"shufflenetv2-{width}"},
                values={f"layer_{i}": "shuffle3" for i in range(16)},
                description=f"ShuffleNetV2 {width} (Ma et al. 2018): all Shuffle 3x3, 224 input, 1000 classes",
                reference={"params": params, "mult_adds": mult_adds},
            )
        options = tuple(BLOCK_KINDS)
        table["spos-imagenet"] = Preset(
            config={"layout": "spos-imagenet"},
            values={f"layer_{i}": options[b] for i, b in enumerate(_SPOS_BLOCKS)},
            description="SPOS block-search result on its ImageNet supernet (Guo et al. 2020): 20 choice layers",
            reference={"mult_adds": 319e6},
        )
        return table
