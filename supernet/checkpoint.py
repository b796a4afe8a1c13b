"""Training checkpoints: one file, replaced atomically, readable with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and plain containers (dicts, lists, strings, numbers), so loading it never
runs pickled code. Writing goes to a temporary file in the same directory, flushed to disk, then
``os.replace``-d over the previous checkpoint: a crash mid-write leaves the previous one intact, and the
temporary file a killed writer left behind is removed by the next write (:func:`remove_stale_temporaries`).

Reading refuses, with a :class:`CheckpointError` (a ``ValueError``) naming the file, anything that is not a
checkpoint of this format: an empty, truncated or random file is "damaged"; a file holding objects other than
plain weights is "untrusted" and is never unpickled (there is no switch to allow it).
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

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "load_checkpoint",
    "load_supernet",
    "remove_stale_temporaries",
    "save_checkpoint",
]

CHECKPOINT_NAME = "supernet.pt"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format", "epoch", "model", "space", "config", "data")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, damaged, untrusted, or from another format or run."""


def _temporary_pattern(path: Path) -> str:
    return f".{path.name}.*.tmp"


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` of ``path`` left; returns those removed.

    Call it only where no other process is writing this checkpoint (the training owns its run directory).
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for stale in path.parent.glob(_temporary_pattern(path)):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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
    import pickle

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no supernet checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (a write was interrupted?); delete it to train again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds objects other than plain weights: untrusted, refused (a checkpoint of this tool holds "
            "tensors, numbers and strings only); delete it to train again"
        ) from None
    except Exception as err:  # torch reports a damaged archive as RuntimeError, EOFError, KeyError...
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint ({type(err).__name__}); delete it to train again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or any(k not in state for k in _REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not a supernet checkpoint of format {FORMAT_VERSION}; delete it or use another run")
    return state


def load_supernet(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Supernet:
    """The supernet saved in a training checkpoint (its space rebuilt from the recorded configuration)."""
    state = load_checkpoint(path, map_location)
    try:
        space = get_space(state["space"]["name"], state["space"]["config"])
        options = state["space"].get("supernet_options", {})
        net = build_supernet(space, seed=0, **options)  # initial weights are overwritten next
        net.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} does not hold a supernet this tool can rebuild ({type(err).__name__}); delete it to train again"
        ) from None
    return net.to(map_location).eval()
