"""EfficientNet block specs: the compact stage encoding, its pure decoder and the width/depth rounding.

A stage of MBConv blocks is written as one string, e.g. ``"mb_r2_k3_s2_e6_c24_se0.25"``:

=====  ==========================================================  ========
token  meaning                                                     required
=====  ==========================================================  ========
mb     block type: MBConv (mobile inverted bottleneck)             yes
r      repeats: number of blocks in the stage                      yes
k      depthwise kernel size (odd)                                 yes
s      stride of the first block (1 or 2); the others use 1        yes
e      expansion ratio of the hidden width (1 = no 1x1 expansion)  yes
c      output channels                                             yes
se     squeeze-and-excitation ratio of the block input (0 = off)   no
=====  ==========================================================  ========

``decode_stage`` turns the string into a frozen ``StageSpec``; ``NetworkSpec.scaled`` applies width and
depth multipliers with the rounding of the reference implementation (Tan & Le 2019, TF ``round_filters``
and ``round_repeats``); ``NetworkSpec.stage_blocks`` expands stages into per-block ``BlockSpec``s that
the builder in ``_mbconv`` turns into layers. Nothing here touches torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

__all__ = [
    "BlockSpec",
    "NetworkSpec",
    "StageSpec",
    "decode_stage",
    "round_filters",
    "round_repeats",
]

_TOKEN = re.compile(r"(se|r|k|s|e|c)(\d+(?:\.\d+)?)")
_INT_KEYS = {"r": "repeats", "k": "kernel", "s": "stride", "e": "expansion", "c": "channels"}
_FORMAT = "mb_r<repeats>_k<kernel>_s<stride>_e<expansion>_c<channels>[_se<ratio>], e.g. 'mb_r2_k3_s2_e6_c24_se0.25'"


@dataclass(frozen=True)
class StageSpec:
    """One stage of identical MBConv blocks before scaling (the first block carries the stride)."""

    repeats: int
    kernel: int
    stride: int
    expansion: int
    channels: int
    se_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("repeats", "expansion", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"stage {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.kernel, int) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"stage kernel must be an odd integer >= 1, got {self.kernel!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"stage stride must be 1 or 2, got {self.stride!r}")
        if not 0.0 <= self.se_ratio <= 1.0:
            raise ValueError(f"stage se ratio must be in [0, 1], got {self.se_ratio!r}")

    def encode(self) -> str:
        """The compact string ``decode_stage`` reads back to an equal spec."""
        text = f"mb_r{self.repeats}_k{self.kernel}_s{self.stride}_e{self.expansion}_c{self.channels}"
        return text + (f"_se{self.se_ratio:g}" if self.se_ratio > 0 else "")


def decode_stage(text: str) -> StageSpec:
    """Decode one stage string (format in the module docstring) into a ``StageSpec``."""
    if not isinstance(text, str):
        raise ValueError(f"a stage is a string {_FORMAT}; got {text!r}")
    head, *tokens = text.strip().split("_")
    if head != "mb":
        raise ValueError(f"stage {text!r}: block type {head!r} is unknown; allowed: 'mb' (MBConv). Format: {_FORMAT}")
    numbers: dict[str, int] = {}
    se_ratio: float | None = None
    for token in tokens:
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ValueError(f"stage {text!r}: token {token!r} is not understood. Format: {_FORMAT}")
        key, number = match.groups()
        if key in numbers or (key == "se" and se_ratio is not None):
            raise ValueError(f"stage {text!r}: token {key!r} is given twice")
        if key == "se":
            se_ratio = float(number)
        elif "." in number:
            raise ValueError(f"stage {text!r}: {_INT_KEYS[key]} must be an integer, got {number!r}")
        else:
            numbers[key] = int(number)
    missing = [f"{key} ({name})" for key, name in _INT_KEYS.items() if key not in numbers]
    if missing:
        raise ValueError(f"stage {text!r}: missing {', '.join(missing)}. Format: {_FORMAT}")
    try:
        return StageSpec(
            repeats=numbers["r"],
            kernel=numbers["k"],
            stride=numbers["s"],
            expansion=numbers["e"],
            channels=numbers["c"],
            se_ratio=se_ratio or 0.0,
        )
    except ValueError as err:
        raise ValueError(f"stage {text!r}: {err}") from None


def round_filters(channels: int, width_mult: float, divisor: int = 8) -> int:
    """Scaled channel count, rounded to the nearest multiple of ``divisor`` but never below 90% of it.

    As the reference implementation: ``max(divisor, int(c * w + divisor / 2) // divisor * divisor)``,
    plus one ``divisor`` if that fell under 90% of ``c * w``.
    """
    if divisor < 1:
        raise ValueError(f"channel divisor must be >= 1, got {divisor}")
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """Scaled number of blocks, rounded up (``ceil``) as the reference implementation."""
    return math.ceil(depth_mult * repeats)


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block, after scaling: the builder's input."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expansion: int
    se_channels: int  # squeeze width of the SE module; 0 = no SE

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expansion

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class NetworkSpec:
    """Stem, MBConv stages and head of an EfficientNet-style network."""

    stem_channels: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_channels: int

    def scaled(self, width_mult: float, depth_mult: float, channel_divisor: int = 8) -> NetworkSpec:
        """Width scales every channel count (stem and head included), depth every stage's repeats."""
        if width_mult <= 0 or depth_mult <= 0:
            raise ValueError(f"width and depth multipliers must be > 0, got {width_mult!r}, {depth_mult!r}")
        stages = tuple(
            replace(
                stage,
                channels=round_filters(stage.channels, width_mult, channel_divisor),
                repeats=round_repeats(stage.repeats, depth_mult),
            )
            for stage in self.stages
        )
        return NetworkSpec(
            stem_channels=round_filters(self.stem_channels, width_mult, channel_divisor),
            stem_stride=self.stem_stride,
            stages=stages,
            head_channels=round_filters(self.head_channels, width_mult, channel_divisor),
        )

    def stage_blocks(self) -> tuple[tuple[BlockSpec, ...], ...]:
        """Per stage, its blocks: the first one strides and changes the width, the others keep both.

        The SE squeeze width is ``max(1, int(block input channels * se_ratio))``, as the reference.
        """
        result = []
        in_channels = self.stem_channels
        for stage in self.stages:
            blocks = []
            for index in range(stage.repeats):
                se_channels = max(1, int(in_channels * stage.se_ratio)) if stage.se_ratio > 0 else 0
                blocks.append(
                    BlockSpec(
                        in_channels=in_channels,
                        out_channels=stage.channels,
                        kernel=stage.kernel,
                        stride=stage.stride if index == 0 else 1,
                        expansion=stage.expansion,
                        se_channels=se_channels,
                    )
                )
                in_channels = stage.channels
            result.append(tuple(blocks))
        return tuple(result)

    @property
    def out_channels(self) -> int:
        return self.stages[-1].channels if self.stages else self.stem_channels
