"""The ``efficientnet`` space: EfficientNet-B0's MBConv stages under compound scaling (Tan & Le 2019).

Labels, in order:

- ``scaling``: ``"compound"`` or ``"custom"`` (below).
- ``phi``: the compound coefficient, on ``phi_grid``.
- ``alpha_beta_gamma``: the (alpha, beta, gamma) triple, spelled ``"1.2,1.1,1.15"``. Options: the triples of
  ``alpha_grid x beta_grid x gamma_grid`` with ``|alpha*beta^2*gamma^2 - constraint_target| <= constraint_tolerance``.
- ``width_mult``, ``depth_mult``, ``resolution``: the multipliers and input side the point implies. Channels
  are rounded by ``round_filters`` (divisor ``channel_divisor``), repeats by ``ceil``; ``build`` ignores the
  resolution (the network is fully convolutional) and ``resolution(arch)`` returns it.
- per stage i = 1..n: ``stage<i>_kernel`` (``kernel_options`` plus the stage's own), ``stage<i>_expansion``
  (``expansion_options`` plus the stage's own: B0's first stage keeps its 1) and ``stage<i>_se`` (squeeze-and-
  excitation on or off; squeeze width ``se_ratio`` x the block input channels), for all blocks of the stage.

Layouts: ``imagenet`` (default: B0 at 224, phi 0..7 on the paper-sized grid, the published multipliers allowed
as custom points) and ``small`` (digits: 1 x 16 x 16 inputs scaled to 16-28 pixels, 10 classes, four narrow
stages, phi 0..2; a forward pass takes milliseconds).

Scaling modes:

- ``"compound"``: ``width_mult = beta^phi``, ``depth_mult = alpha^phi`` (4 decimals) and ``resolution =
  input_size * gamma^phi`` rounded to a multiple of ``resolution_divisor`` (``_compound``). ``validate``
  checks that the recorded values follow; ``sample`` and ``suggest`` only propose such points.
- ``"custom"``: a hand-set point, such as the published B1-B7 whose multipliers were set by hand (B2's depth
  is 1.2, not 1.2^2). ``width_mult``, ``depth_mult`` and ``resolution`` are taken as recorded (any option of
  their labels: the compound values of the grid plus the layout's ``custom_*`` lists), while ``phi`` and
  ``alpha_beta_gamma`` record the grid point the network was derived from (B1-B7: phi 1..7 and the paper's
  ``1.2,1.1,1.15``), which must still satisfy the constraint. ``suggest`` asks for ``scaling`` with the only
  choice ``"compound"``: replaying a custom point through an Optuna ``FixedTrial`` fails loudly.

Why one label for the triple: an Optuna categorical must keep its choices in every trial, so beta's choices
cannot depend on alpha. ``suggest`` asks for one categorical over the *valid* triples, and the architecture
records the answer under the same label, so ``suggest(FixedTrial(arch.values))`` rebuilds ``arch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import astuple, replace
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
from torch import nn

from search_spaces._arch import Architecture, Scalar
from search_spaces._blocks import NETWORK_INPUT, BlockChain, LatencyBlock, classifier_head, strided
from search_spaces._compound import Coefficients, Scaling
from search_spaces._efficientnet_config import (
    B0_STAGES,
    COEFFICIENTS,
    PAPER_COEFFICIENTS,
    SCALING_MODES,
    EfficientNetConfig,
)
from search_spaces._efficientnet_spec import BlockSpec, NetworkSpec, StageSpec, decode_stage
from search_spaces._mbconv import ConvNormAct, EfficientNet, MBConv, tf_batch_norm
from search_spaces._space import Preset, SearchSpace, SpaceConfig

if TYPE_CHECKING:
    import optuna

__all__ = [
    "B0_STAGES",
    "COEFFICIENTS",
    "BlockSpec",
    "Coefficients",
    "EfficientNet",
    "EfficientNetConfig",
    "EfficientNetSpace",
    "NetworkSpec",
    "StageSpec",
    "decode_stage",
]

class EfficientNetSpace(SearchSpace):
    """EfficientNet compound-scaling space: phi and (alpha, beta, gamma) on a grid, MBConv choices per stage."""

    name: ClassVar[str] = "efficientnet"
    description: ClassVar[str] = (
        "EfficientNet (Tan & Le 2019): B0's MBConv stages (kernel 3/5/7, expansion 3/4/6, SE on/off per stage) "
        "scaled by phi with depth alpha^phi, width beta^phi, resolution gamma^phi, alpha*beta^2*gamma^2 ~ 2"
    )
    Config: ClassVar[type[SpaceConfig]] = EfficientNetConfig
    layouts: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # The paper's ImageNet network and grid (the config defaults).
        "imagenet": {"input_size": 224, "num_classes": 1000},
        # Digits-sized inputs (16 base, 16-28 after scaling): stride-1 stem, four narrow stages
        # (16x16 -> 8 -> 4 -> 2), head 128, divisors of 4 so that small widths and sides still move.
        "small": {
            "input_size": 16,
            "num_classes": 10,
            "in_channels": 1,
            "stem_channels": 16,
            "stem_stride": 1,
            "stages": (
                "mb_r1_k3_s1_e1_c8_se0.25",
                "mb_r1_k3_s2_e6_c16_se0.25",
                "mb_r2_k5_s2_e6_c24_se0.25",
                "mb_r1_k3_s2_e6_c32_se0.25",
            ),
            "head_channels": 128,
            "channel_divisor": 4,
            "resolution_divisor": 4,
            "phi_grid": (0, 1, 2),
            "alpha_grid": (1.0, 1.1, 1.2, 1.3),
            "beta_grid": (1.0, 1.1, 1.2, 1.3),
            "gamma_grid": (1.0, 1.1, 1.2, 1.3),
            "custom_width_mults": (),
            "custom_depth_mults": (),
            "custom_resolutions": (),
        },
    }
    default_layout: ClassVar[str] = "imagenet"

    config: EfficientNetConfig

    def __init__(self, config: SpaceConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self._base = self.config.base_network()
        self._triples = self.config.valid_coefficients()
        self._stage_choices = self._make_stage_choices()
        self._choices = self._make_choices()

    # choices ------------------------------------------------------------------------------------
    def _make_choices(self) -> dict[str, tuple[Scalar, ...]]:
        cfg = self.config
        implied = [self._implied(phi, triple) for phi in cfg.phi_grid for triple in self._triples]
        choices: dict[str, tuple[Scalar, ...]] = {
            "scaling": SCALING_MODES,
            "phi": tuple(cfg.phi_grid),
            COEFFICIENTS: tuple(triple.label for triple in self._triples),
            "width_mult": tuple(sorted({s.width_mult for s in implied} | set(cfg.custom_width_mults))),
            "depth_mult": tuple(sorted({s.depth_mult for s in implied} | set(cfg.custom_depth_mults))),
            "resolution": tuple(sorted({s.resolution for s in implied} | set(cfg.custom_resolutions))),
        }
        return {**choices, **self._stage_choices}

    def _make_stage_choices(self) -> dict[str, tuple[Scalar, ...]]:
        choices: dict[str, tuple[Scalar, ...]] = {}
        for index, stage in enumerate(self._base.stages, start=1):
            choices[f"stage{index}_kernel"] = tuple(sorted({*self.config.kernel_options, stage.kernel}))
            choices[f"stage{index}_expansion"] = tuple(sorted({*self.config.expansion_options, stage.expansion}))
            choices[f"stage{index}_se"] = (False, True)
        return choices

    def choices(self) -> dict[str, tuple[Scalar, ...]]:
        return dict(self._choices)

    def coefficients(self) -> tuple[Coefficients, ...]:
        """The (alpha, beta, gamma) triples of the grid that satisfy the constraint."""
        return self._triples

    def baseline_blocks(self) -> dict[str, Scalar]:
        """The per-stage labels of the layout's own stages (for ImageNet: B0's)."""
        return _baseline_blocks(self._base.stages)

    def resolution(self, arch: Architecture | None = None) -> int:
        """The input side: the architecture's ``resolution``, or the layout's base ``input_size``."""
        return self.config.input_size if arch is None else int(arch["resolution"])

    # validation ---------------------------------------------------------------------------------
    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        values = arch.values if isinstance(arch, Architecture) else arch
        if isinstance(values, Mapping) and values.get(COEFFICIENTS) not in (None, *self._choices[COEFFICIENTS]):
            self._explain_coefficients(values[COEFFICIENTS])
        return super().validate(arch)

    def _explain_coefficients(self, text: Any) -> None:
        """Raise the most precise message for a triple that is not an option."""
        cfg = self.config
        where = f"label {COEFFICIENTS!r}: value {text!r}"
        if not isinstance(text, str):
            return  # the base class names the options
        try:
            triple = Coefficients.parse(text)
        except ValueError as err:
            raise ValueError(f"{where}: {err}; e.g. {self._triples[0].label!r}") from None
        for name, value, grid in (
            ("alpha", triple.alpha, cfg.alpha_grid),
            ("beta", triple.beta, cfg.beta_grid),
            ("gamma", triple.gamma, cfg.gamma_grid),
        ):
            if not any(math.isclose(value, g) for g in grid):
                raise ValueError(f"{where}: {name} {value:g} is not on {name}_grid; allowed: {list(grid)}")
        if not triple.within(cfg.constraint_target, cfg.constraint_tolerance):
            nearest = min(self._triples, key=lambda t: abs(t.product - triple.product))
            raise ValueError(
                f"{where}: alpha*beta^2*gamma^2 = {triple.product:.4g}, must be within "
                f"{cfg.constraint_tolerance:g} of {cfg.constraint_target:g} "
                f"(off by {abs(triple.product - cfg.constraint_target):.4g}); "
                f"{len(self._triples)} grid triples satisfy it, e.g. {nearest.label!r}"
            )
        same = next(t for t in self._triples if all(map(math.isclose, astuple(t), astuple(triple))))
        raise ValueError(f"{where}: spell it {same.label!r}")

    def check_constraints(self, arch: Architecture) -> None:
        """In compound scaling, width, depth and resolution must follow from phi and the triple."""
        if arch["scaling"] != "compound":
            return
        phi, triple = int(arch["phi"]), Coefficients.parse(str(arch[COEFFICIENTS]))
        implied = self._implied(phi, triple)
        rules = (
            ("width_mult", implied.width_mult, f"beta^phi = {triple.beta:g}^{phi}"),
            ("depth_mult", implied.depth_mult, f"alpha^phi = {triple.alpha:g}^{phi}"),
            (
                "resolution",
                implied.resolution,
                f"input_size*gamma^phi = {self.config.input_size}*{triple.gamma:g}^{phi} "
                f"rounded to a multiple of {self.config.resolution_divisor}",
            ),
        )
        for label, expected, formula in rules:
            if arch[label] != expected:
                raise ValueError(
                    f"label {label!r}: value {arch[label]!r} does not follow from scaling 'compound' with "
                    f"phi={phi} and {COEFFICIENTS}={triple.label!r}: {formula} = {expected!r}; "
                    f"set {label} to {expected!r}, or scaling to 'custom' for a hand-set point"
                )

    # making architectures -----------------------------------------------------------------------
    def compound(
        self, phi: int, coefficients: Coefficients | str, blocks: Mapping[str, Scalar] | None = None
    ) -> Architecture:
        """The valid compound-scaled architecture of ``phi`` and a triple; ``blocks`` overrides stage labels
        (the rest keep the layout's own stages)."""
        triple = Coefficients.parse(coefficients) if isinstance(coefficients, str) else coefficients
        implied = self._implied(phi, triple)
        values: dict[str, Scalar] = {
            "scaling": "compound",
            "phi": phi,
            COEFFICIENTS: triple.label,
            "width_mult": implied.width_mult,
            "depth_mult": implied.depth_mult,
            "resolution": implied.resolution,
            **self.baseline_blocks(),
        }
        unknown = sorted(set(blocks or {}) - set(self._stage_choices))
        if unknown:
            raise ValueError(f"unknown stage label(s) {unknown}; allowed: {', '.join(self._stage_choices)}")
        values.update(blocks or {})
        return self.make_arch(values)

    def sample(self, rng: np.random.Generator | int | None = None) -> Architecture:
        """A uniform draw of phi, of a *valid* triple and of every stage label: never breaks the constraint."""
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        phi = self.config.phi_grid[int(gen.integers(len(self.config.phi_grid)))]
        triple = self._triples[int(gen.integers(len(self._triples)))]
        blocks = {label: opts[int(gen.integers(len(opts)))] for label, opts in self._stage_choices.items()}
        return self.compound(phi, triple, blocks)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Architecture:
        """Suggest phi, one of the valid triples and the stage labels; record the implied multipliers."""
        trial.suggest_categorical("scaling", ["compound"])
        phi = trial.suggest_categorical("phi", list(self.config.phi_grid))
        triple = trial.suggest_categorical(COEFFICIENTS, [t.label for t in self._triples])
        blocks = {
            label: cast("Scalar", trial.suggest_categorical(label, list(opts)))
            for label, opts in self._stage_choices.items()
        }
        return self.compound(int(phi), str(triple), blocks)

    def _implied(self, phi: int, triple: Coefficients) -> Scaling:
        return triple.scaling(phi, self.config.input_size, self.config.resolution_divisor)

    # building -----------------------------------------------------------------------------------
    def network_spec(self, arch: Architecture | Mapping[str, Any]) -> NetworkSpec:
        """The scaled stem, stages and head of a valid architecture: what ``build`` builds."""
        arch = self.validate(arch)
        stages = tuple(
            replace(
                stage,
                kernel=int(arch[f"stage{index}_kernel"]),
                expansion=int(arch[f"stage{index}_expansion"]),
                se_ratio=self.config.se_ratio if arch[f"stage{index}_se"] else 0.0,
            )
            for index, stage in enumerate(self._base.stages, start=1)
        )
        return replace(self._base, stages=stages).scaled(
            float(arch["width_mult"]), float(arch["depth_mult"]), self.config.channel_divisor
        )

    def build(self, arch: Architecture | Mapping[str, Any]) -> EfficientNet:
        return EfficientNet(
            self.network_spec(arch),
            in_channels=self.config.in_channels,
            num_classes=self.config.num_classes,
            dropout=self.config.dropout,
        )

    def latency_blocks(self, arch: Architecture | Mapping[str, Any]) -> list[LatencyBlock]:
        """Stem, one block per MBConv (widths, kernel, stride, expansion, SE width), head with the classifier.

        The input is ``resolution(arch)`` pixels a side, so the same MBConv at another resolution is another
        measurement (same key, other input shape).
        """
        arch = self.validate(arch)
        spec = self.network_spec(arch)
        cfg = self.config
        side = self.resolution(arch)
        chain = BlockChain((cfg.in_channels, side, side))
        side = strided(side, spec.stem_stride)
        chain.add(
            f"efficientnet/stem_c{cfg.in_channels}-{spec.stem_channels}_s{spec.stem_stride}",
            partial(_stem, cfg.in_channels, spec),
            (spec.stem_channels, side, side),
            sources=(NETWORK_INPUT,),
        )
        for block in (b for stage in spec.stage_blocks() for b in stage):
            side = strided(side, block.stride)
            chain.add(
                f"efficientnet/mbconv_c{block.in_channels}-{block.out_channels}_k{block.kernel}_s{block.stride}"
                f"_e{block.expansion}_se{block.se_channels}",
                partial(_mbconv, block),
                (block.out_channels, side, side),
            )
        chain.add(
            f"efficientnet/head_c{spec.out_channels}-{spec.head_channels}_n{cfg.num_classes}",
            partial(_head, spec, cfg.num_classes, cfg.dropout),
            (cfg.num_classes,),
        )
        return chain.blocks

    # presets ------------------------------------------------------------------------------------
    @classmethod
    def preset_table(cls) -> Mapping[str, Preset]:
        """B0-B7 with the published (width, depth, resolution, dropout) and the paper's params / mult-adds.

        B0 is the compound point phi = 0. B1-B7 are "custom" points: their multipliers were set by hand,
        and phi = 1..7 with the paper's (1.2, 1.1, 1.15) records the grid point they were derived from.
        """
        blocks = _baseline_blocks(tuple(decode_stage(text) for text in B0_STAGES))
        table = {}
        for phi, (width, depth, side, dropout, params, mult_adds) in enumerate(_PUBLISHED):
            name = f"efficientnet-b{phi}"
            table[name] = Preset(
                config={"layout": "imagenet", "dropout": dropout},
                values={
                    "scaling": "compound" if phi == 0 else "custom",
                    "phi": phi,
                    COEFFICIENTS: PAPER_COEFFICIENTS.label,
                    "width_mult": width,
                    "depth_mult": depth,
                    "resolution": side,
                    **blocks,
                },
                description=(
                    f"EfficientNet-B{phi} (Tan & Le 2019): width {width:g}, depth {depth:g}, "
                    f"{side}x{side} input, dropout {dropout:g}"
                ),
                reference={"params": params, "mult_adds": mult_adds},
            )
        return table


# width, depth, resolution, dropout (reference implementation) and params, mult-adds (paper, table 2).
_PUBLISHED = (
    (1.0, 1.0, 224, 0.2, 5.3e6, 0.39e9),
    (1.0, 1.1, 240, 0.2, 7.8e6, 0.70e9),
    (1.1, 1.2, 260, 0.3, 9.2e6, 1.0e9),
    (1.2, 1.4, 300, 0.3, 12e6, 1.8e9),
    (1.4, 1.8, 380, 0.4, 19e6, 4.2e9),
    (1.6, 2.2, 456, 0.4, 30e6, 9.9e9),
    (1.8, 2.6, 528, 0.5, 43e6, 19e9),
    (2.0, 3.1, 600, 0.5, 66e6, 37e9),
)


def _stem(in_channels: int, spec: NetworkSpec) -> nn.Module:
    """The layers of ``EfficientNet.stem``."""
    return ConvNormAct(
        in_channels, spec.stem_channels, 3, spec.stem_stride, norm_layer=tf_batch_norm, act_layer=nn.SiLU
    )


def _mbconv(block: BlockSpec) -> nn.Module:
    """One MBConv of ``EfficientNet.stages``."""
    return MBConv(
        block.in_channels,
        block.out_channels,
        block.kernel,
        block.stride,
        block.expansion,
        block.se_channels,
        norm_layer=tf_batch_norm,
        act_layer=nn.SiLU,
    )


def _head(spec: NetworkSpec, num_classes: int, dropout: float) -> nn.Module:
    """The layers after ``EfficientNet.stages``: 1x1 head conv, pooling, dropout, classifier."""
    head = ConvNormAct(spec.out_channels, spec.head_channels, 1, norm_layer=tf_batch_norm, act_layer=nn.SiLU)
    return classifier_head([head], spec.head_channels, num_classes, dropout)


def _baseline_blocks(stages: tuple[StageSpec, ...]) -> dict[str, Scalar]:
    values: dict[str, Scalar] = {}
    for index, stage in enumerate(stages, start=1):
        values[f"stage{index}_kernel"] = stage.kernel
        values[f"stage{index}_expansion"] = stage.expansion
        values[f"stage{index}_se"] = stage.se_ratio > 0
    return values
