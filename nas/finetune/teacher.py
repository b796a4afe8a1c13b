"""The teacher of knowledge distillation: the run's largest candidate from the supernet, or a user's model.

``largest``: of the run's complete candidates, the one with the most parameters, extracted from the supernet with
its BN statistics recalibrated exactly as the search scored it (for the shufflenet space this is the heaviest
choice-block mix the search met; the supernet's weights are what Once-for-All's largest subnet would be).
``module:callable``: the callable (no arguments) returns a trained ``nn.Module`` taking the run's inputs and giving
one logit per class of the run's data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from nas.core.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from nas.core.config import RunConfig
    from nas.core.data import DataBundle
    from nas.search.records import CandidateRecord
    from search_spaces import SearchSpace
    from supernet import Supernet

__all__ = ["load_teacher"]


def _user_model(spec: str) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--teacher {spec!r} must be 'largest' or MODULE:CALLABLE, e.g. mypkg.models:make_teacher")
    try:
        factory: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"--teacher {spec!r} cannot be loaded: {err}") from None
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--teacher {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_teacher(
    spec: str, records: list[CandidateRecord], supernet: Supernet, space: SearchSpace, data: DataBundle, cfg: RunConfig
) -> tuple[nn.Module, str]:
    """The teacher model (eval mode) and a line describing it."""
    from nas.search.candidate import scored_subnet
    from search_spaces import Architecture

    if spec != "largest":
        model = _user_model(spec).eval()
        x = data.val[0][0].unsqueeze(0)
        with torch.inference_mode():
            out = model(x)
        if out.ndim != 2 or out.shape[1] != data.num_classes:
            raise UsageError(f"--teacher {spec!r} gives outputs of shape {tuple(out.shape)}, not (N, {data.num_classes})")
        return model, f"user model {spec}"
    complete = [r for r in records if r.status == "COMPLETE"]
    if not complete:
        raise UsageError("the run has no complete candidate to take the largest from")
    largest = max(complete, key=lambda r: (r.params, -r.trial))
    arch = space.validate(Architecture(space.name, largest.arch))
    model = scored_subnet(supernet, arch, data, cfg.supernet, cfg.search.seed)
    return model, f"largest candidate of the run: trial {largest.trial} ({largest.params} params), supernet weights"
