"""The configuration of the ``efficientnet`` space: B0's stages, the compound-scaling grid, its constraint.

See :mod:`search_spaces.efficientnet` for what the labels mean; this module holds the validated layout.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from search_spaces._compound import Coefficients, valid_coefficients
from search_spaces._efficientnet_spec import NetworkSpec, decode_stage
from search_spaces._space import SpaceConfig

__all__ = ["B0_STAGES", "COEFFICIENTS", "PAPER_COEFFICIENTS", "SCALING_MODES", "EfficientNetConfig"]

COEFFICIENTS = "alpha_beta_gamma"
SCALING_MODES = ("compound", "custom")

# EfficientNet-B0 (Tan & Le 2019, table 1): MBConv stages between the 3x3 stem (32) and the 1x1 head (1280).
B0_STAGES = (
    "mb_r1_k3_s1_e1_c16_se0.25",
    "mb_r2_k3_s2_e6_c24_se0.25",
    "mb_r2_k5_s2_e6_c40_se0.25",
    "mb_r3_k3_s2_e6_c80_se0.25",
    "mb_r3_k5_s1_e6_c112_se0.25",
    "mb_r4_k5_s2_e6_c192_se0.25",
    "mb_r1_k3_s1_e6_c320_se0.25",
)
# The paper's grid-search result at phi = 1 (alpha*beta^2*gamma^2 = 1.92).
PAPER_COEFFICIENTS = Coefficients(1.2, 1.1, 1.15)

PositiveInt = Annotated[int, Field(ge=1)]
Multiplier = Annotated[float, Field(ge=1.0)]


class EfficientNetConfig(SpaceConfig):
    """Layout and search grid of the space. Defaults: the paper's B0 and an ImageNet grid."""

    stem_channels: PositiveInt = 32
    stem_stride: Literal[1, 2] = 2
    stages: tuple[str, ...] = Field(default=B0_STAGES, min_length=1)
    head_channels: PositiveInt = 1280
    channel_divisor: PositiveInt = 8
    resolution_divisor: PositiveInt = 8
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    se_ratio: float = Field(default=0.25, gt=0.0, le=1.0)
    kernel_options: tuple[PositiveInt, ...] = Field(default=(3, 5, 7), min_length=1)
    expansion_options: tuple[PositiveInt, ...] = Field(default=(3, 4, 6), min_length=1)
    phi_grid: tuple[Annotated[int, Field(ge=0)], ...] = Field(default=(0, 1, 2, 3, 4, 5, 6, 7), min_length=1)
    alpha_grid: tuple[Multiplier, ...] = Field(default=(1.0, 1.1, 1.2, 1.3, 1.4), min_length=1)
    beta_grid: tuple[Multiplier, ...] = Field(default=(1.0, 1.05, 1.1, 1.15, 1.2), min_length=1)
    gamma_grid: tuple[Multiplier, ...] = Field(default=(1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3), min_length=1)
    constraint_target: float = Field(default=2.0, gt=0.0)
    constraint_tolerance: float = Field(default=0.1, ge=0.0)
    # Hand-set multipliers allowed in "custom" scaling (besides every compound value of the grid).
    custom_width_mults: tuple[Annotated[float, Field(gt=0.0)], ...] = (1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0)
    custom_depth_mults: tuple[Annotated[float, Field(gt=0.0)], ...] = (1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1)
    custom_resolutions: tuple[PositiveInt, ...] = (224, 240, 260, 300, 380, 456, 528, 600)

    @field_validator("stages")
    @classmethod
    def _decodable(cls, stages: tuple[str, ...]) -> tuple[str, ...]:
        for index, text in enumerate(stages):
            try:
                decode_stage(text)
            except ValueError as err:
                raise ValueError(f"stages[{index}]: {err}") from None
        return stages

    @field_validator("kernel_options")
    @classmethod
    def _odd_kernels(cls, kernels: tuple[int, ...]) -> tuple[int, ...]:
        even = [k for k in kernels if k % 2 == 0]
        if even:
            raise ValueError(f"kernels must be odd (for 'same' padding), got {even}")
        return kernels

    @field_validator("phi_grid", "alpha_grid", "beta_grid", "gamma_grid", "kernel_options", "expansion_options")
    @classmethod
    def _unique(cls, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct, got {list(values)}")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> EfficientNetConfig:
        for index, text in enumerate(self.stages):
            ratio = decode_stage(text).se_ratio
            if ratio not in (0.0, self.se_ratio):
                raise ValueError(
                    f"stages[{index}] has se ratio {ratio:g}; allowed: 0 or se_ratio ({self.se_ratio:g}), "
                    "since SE is searched on/off at se_ratio"
                )
        if not self.valid_coefficients():
            raise ValueError(
                f"no (alpha, beta, gamma) of the grids has alpha*beta^2*gamma^2 within "
                f"{self.constraint_tolerance:g} of {self.constraint_target:g}; widen a grid or the tolerance"
            )
        return self

    def valid_coefficients(self) -> tuple[Coefficients, ...]:
        return valid_coefficients(
            self.alpha_grid, self.beta_grid, self.gamma_grid, self.constraint_target, self.constraint_tolerance
        )

    def base_network(self) -> NetworkSpec:
        stages = tuple(decode_stage(text) for text in self.stages)
        return NetworkSpec(self.stem_channels, self.stem_stride, stages, self.head_channels)
