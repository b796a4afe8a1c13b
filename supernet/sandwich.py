"""The sandwich rule with in-place distillation (BigNAS, Yu et al. 2020; slimmable networks, Yu & Huang 2019).

Every training step runs the largest architecture, the smallest one and ``n`` architectures drawn by the
configured path sampler, on the same batch, and adds up their gradients before one update. The largest one
learns from the labels; with in-place distillation the others learn from its soft predictions (detached:
the teacher is not pulled towards its students), which BigNAS found to train the small paths better than
the labels and needs no separate teacher network.

The random paths come from the usual sampler (``uniform`` or ``budget``), whose state is what a checkpoint
saves: the largest and smallest architectures are fixed by the space (``Supernet.extreme_architectures``),
so a resumed run draws exactly the paths an uninterrupted one would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from search_spaces import Architecture
    from supernet._base import Supernet
    from supernet.samplers import PathSampler

__all__ = ["SandwichRule", "distillation_loss"]


class SandwichRule:
    """The paths of one sandwich step: ``[largest, smallest, n random]`` (largest first: it is the teacher)."""

    def __init__(self, supernet: Supernet, sampler: PathSampler, random_paths: int) -> None:
        if random_paths < 0:
            raise ValueError(f"random_paths must be >= 0, got {random_paths}")
        self.smallest, self.largest = supernet.extreme_architectures()
        self.sampler = sampler
        self.random_paths = random_paths

    def paths(self) -> list[Architecture]:
        """The architectures of the next step, the teacher first."""
        return [self.largest, self.smallest, *(self.sampler.sample() for _ in range(self.random_paths))]


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's softened predictions, times ``temperature^2``.

    The teacher's logits are detached here, so the loss never moves the teacher. The ``T^2`` factor keeps
    the gradient scale independent of the temperature (Hinton et al. 2015). Computed in float32 whatever
    the autocast dtype, as softmax in half precision loses the small probabilities.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    target = F.softmax(teacher_logits.detach().float() / temperature, dim=1)
    log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    return -(target * log_probs).sum(dim=1).mean() * temperature**2
