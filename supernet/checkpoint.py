"""Training checkpoints: one file, replaced atomically, readable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (dicts, lists, strings, numbers), so loading it never
runs pickled code. Writing goes to a temporary file in the same directory, flushed to disk, then
``os.replace``-d over the previous checkpoint: a crash mid-write leaves the previous one intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from search_spaces import get_space
from supernet._factory import build_supernet

if TYPE_CHECKING:
    from supernet._base import Supernet

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "load_supernet", "save_checkpoint"]

CHECKPOINT_NAME = "supernet.pt"
FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (weights only: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no supernet checkpoint at {path}")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a supernet checkpoint of format {FORMAT_VERSION}")
    return state


def load_supernet(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Supernet:
    """The supernet saved in a training checkpoint (its space rebuilt from the recorded configuration)."""
    state = load_checkpoint(path, map_location)
    space = get_space(state["space"]["name"], state["space"]["config"])
    options = state["space"].get("supernet_options", {})
    net = build_supernet(space, seed=0, **options)  # initial weights are overwritten next
    net.load_state_dict(state["model"])
    return net.to(map_location).eval()
