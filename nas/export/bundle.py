"""The export bundle: what a deployment needs beside the weights, and how the files reach the disk.

A bundle of candidate ``trialN`` in a directory:
- ``trialN.onnx``: the network, with its preprocessing and architecture as ONNX metadata (``metadata_props``,
  every value a string; JSON for lists and mappings) so the file alone says how to feed it;
- ``trialN.arch.json``: the architecture with its space, layout and full space configuration (``nas profile --arch
  FILE`` rebuilds the network from it alone);
- ``trialN.state_dict.pt``: the PyTorch weights (plain tensors);
- ``trialN.export.json``: the bundle record, written last: preprocessing, architecture, the supernet it came from,
  the ONNX Runtime check and the profile. Its presence means "checked".

Writing (:class:`BundleWriter`): every file is written into a hidden staging directory beside the target, the old
record is removed, the files are renamed into place, and the record is written last (atomically). An export killed
at any moment leaves either no record, or the previous complete bundle: never files that look checked but are not.
Staging directories a killed export left are removed by the next export to the same directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.core.data import DataBundle

__all__ = ["BUNDLE_SUFFIXES", "BundleWriter", "add_onnx_metadata", "preprocessing", "read_onnx_metadata"]

BUNDLE_SUFFIXES = {"onnx": ".onnx", "arch": ".arch.json", "state_dict": ".state_dict.pt", "record": ".export.json"}
_STAGING = ".partial-"


def preprocessing(data: DataBundle) -> dict[str, Any]:
    """How an image must be prepared before the network sees it (what the training and the check fed it)."""
    return {
        "input_size": data.input_size,
        "in_channels": data.in_channels,
        "layout": "NCHW",
        "dtype": "float32",
        "scale": "pixel values divided by their maximum (255 for 8-bit images) to [0, 1]",
        "mean": list(data.mean),
        "std": list(data.std),
        "normalise": "(x - mean) / std per channel, after scaling",
        "class_names": list(data.class_names),
        "output": "logits, one per class in class_names order (softmax for probabilities)",
    }


def _meta_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def add_onnx_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Set ``metadata`` (key -> value; non-strings as JSON) as the ONNX file's ``metadata_props``, in place."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            for prop in model.metadata_props:
                if prop.key == key:
                    prop.value = _meta_value(value)
        else:
            model.metadata_props.add(key=key, value=_meta_value(value))
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata_props`` of an ONNX file, JSON values decoded."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            out[prop.key] = prop.value
    return out


class BundleWriter:
    """Stage the files of the bundle ``<directory>/<stem>.*``, then commit them (record last) or discard them."""

    def __init__(self, onnx_path: Path) -> None:
        self.directory = onnx_path.parent
        self.stem = onnx_path.name.removesuffix(".onnx")
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".{self.stem}{_STAGING}*"):  # a killed export's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.stem}{_STAGING}", dir=self.directory))

    def staged(self, kind: str) -> Path:
        """Where to write the file ``kind`` (a key of :data:`BUNDLE_SUFFIXES`) before the commit."""
        return self.staging / f"{self.stem}{BUNDLE_SUFFIXES[kind]}"

    def final(self, kind: str) -> Path:
        return self.directory / f"{self.stem}{BUNDLE_SUFFIXES[kind]}"

    def commit(self, record: dict[str, Any]) -> dict[str, Path]:
        """Move the staged files into place and write ``record`` last; returns the final paths."""
        self.final("record").unlink(missing_ok=True)  # no old "checked" record beside new, unchecked files
        paths = {}
        for kind in BUNDLE_SUFFIXES:
            if kind != "record" and self.staged(kind).is_file():
                os.replace(self.staged(kind), self.final(kind))
                paths[kind] = self.final(kind)
        staged_record = self.staged("record")
        staged_record.write_text(json.dumps(record, indent=2, default=str))
        os.replace(staged_record, self.final("record"))
        paths["record"] = self.final("record")
        self.discard()
        return paths

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
