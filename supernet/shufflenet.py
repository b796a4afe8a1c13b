"""The weight-sharing supernet of space ``shufflenet`` (SPOS / DetNAS choice blocks).

Every choice layer holds one static ``ShuffleBlock`` per option in an ``nn.ModuleDict`` keyed by the option
name; stem, head, pooling, dropout and classifier are shared by all paths. The shared modules and the blocks
are the very classes the static network is built from, so a subnet's weights are the supernet's under
shorter names: supernet ``blocks.3.shuffle5.branch_main.0.weight`` is static ``blocks.3.branch_main.0.weight``.
Batch-norm statistics live inside each option's block, so they are per option too and are copied with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from search_spaces.shufflenet import ShuffleBlock, ShuffleNetSpace, decode_blocks
from supernet._base import Supernet

if TYPE_CHECKING:
    from search_spaces import Architecture, SearchSpace

__all__ = ["ShuffleNetSupernet"]


class ShuffleNetSupernet(Supernet):
    """All options of every ``layer_i`` of a ``ShuffleNetSpace``, sharing stem, head and classifier."""

    space: ShuffleNetSpace

    def __init__(self, space: SearchSpace) -> None:
        if not isinstance(space, ShuffleNetSpace):
            raise ValueError(f"ShuffleNetSupernet needs a ShuffleNetSpace, got {type(space).__name__}")
        super().__init__(space)
        self.space = space
        layout = space.layout
        options = layout.options
        # The static network of the first option everywhere gives the shared modules (built by the space's
        # own code, so their names and shapes match every extracted subnet) and that option's blocks.
        template = space.build({label: options[0] for label in space.labels()})
        # Block specs per option (in/out channels and stride depend on the position only).
        specs = {o: decode_blocks(layout, {label: o for label in space.labels()}) for o in options[1:]}
        self.stem = template.stem
        self.head = template.head
        self.pool = template.pool
        self.dropout = template.dropout
        self.classifier = template.classifier
        layers = []
        for i, first_block in enumerate(template.blocks):
            choice = nn.ModuleDict({options[0]: first_block})
            for option in options[1:]:
                choice[option] = ShuffleBlock(specs[option][i])
            layers.append(choice)
        self.blocks = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, arch: Architecture | Mapping[str, Any]) -> torch.Tensor:
        arch = self.validate(arch)
        x = self.stem(x)
        for i, choice in enumerate(self.blocks):
            x = cast(nn.ModuleDict, choice)[str(arch[f"layer_{i}"])](x)
        x = self.head(x)
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return self.classifier(x)

    def subnet_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for name, tensor in self.state_dict().items():
            if name.startswith("blocks."):
                _, layer, option, rest = name.split(".", 3)
                if option != arch[f"layer_{layer}"]:
                    continue
                name = f"blocks.{layer}.{rest}"
            state[name] = tensor
        return state

