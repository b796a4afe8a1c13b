"""The contract of every weight-sharing supernet.

A supernet holds the weights of every option of its search space. ``forward(x, arch)`` runs the path an
architecture picks -- the architecture is an argument, never state stored in the network -- and
``extract(arch)`` returns the space's static ``build(arch)`` with the path's weights copied in.

A subclass implements two methods:

* ``forward(x, arch)``: the sampled path only;
* ``subnet_state_dict(arch)``: the state dict of the static network of ``arch``, in the static network's
  names. A choice of modules renames keys (``blocks.3.shuffle5.conv.weight`` -> ``blocks.3.conv.weight``);
  an elastic layer (Once-for-All) slices its full-size weight; an input choice (NASNet cells) keeps only the
  chosen inputs' modules.

``extract`` is then the same for every space: build the static network, load that state dict strictly (so a
missing or extra key is an error, not a silent mismatch) and return it in eval mode.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from search_spaces import Architecture, SearchSpace

__all__ = ["Supernet"]


class Supernet(nn.Module, abc.ABC):
    """Shared weights of a search space, one path at a time."""

    # Keyword arguments of the constructor that change the weights a supernet holds (e.g. Once-for-All's
    # kernel transformation): ``build_supernet`` accepts these, checkpoints record ``options()``.
    OPTIONS: ClassVar[frozenset[str]] = frozenset()
    # Whether ``forward`` takes ``drop_path=rate`` (the trainer's scheduled drop path needs it).
    supports_drop_path: ClassVar[bool] = False

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, arch: Architecture | Mapping[str, Any]) -> torch.Tensor:
        """Run only the path of ``arch`` (a valid architecture of ``self.space``)."""

    @abc.abstractmethod
    def subnet_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The weights and buffers of ``arch``'s path, keyed by the names of ``space.build(arch)``.

        The tensors may share storage with the supernet: ``extract`` copies them.
        """

    def options(self) -> dict[str, Any]:
        """The constructor options this supernet was built with (plain JSON), to rebuild it from a checkpoint."""
        return {}

    def extreme_architectures(self) -> tuple[Architecture, Architecture]:
        """(smallest, largest) architectures of the space, for the sandwich rule (BigNAS).

        Only spaces whose options are sizes have them; the default refuses with a ValueError.
        """
        raise ValueError(
            f"the sandwich rule needs a smallest and a largest architecture; space {self.space.name!r} has no "
            "such order (its options are different operations, not sizes). Spaces with one: efficientnet"
        )

    def validate(self, arch: Architecture | Mapping[str, Any]) -> Architecture:
        """``arch`` as a valid ``Architecture`` of this supernet's space (ValueError otherwise)."""
        return self.space.validate(arch)

    def extract(self, arch: Architecture | Mapping[str, Any]) -> nn.Module:
        """The static network of ``arch`` with this supernet's weights and BN statistics, in eval mode.

        A deep copy: training or recalibrating the result leaves the supernet unchanged. It lives on the
        supernet's device, in float32 like ``space.build``.
        """
        arch = self.validate(arch)
        model = self.space.build(arch).to(self.device)
        with torch.no_grad():
            model.load_state_dict(self.subnet_state_dict(arch), strict=True)
        return model.eval()

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return f"space={self.space.name!r}, cardinality={self.space.cardinality()}"
