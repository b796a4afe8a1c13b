"""Readers of the supported image formats: each returns the raw images of the train, val and test splits.

See :mod:`nas.core.data.datasets` for the decisions (splits, scaling, what each format expects).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.core.memory import FLOAT_BYTES, check_fits

__all__ = ["IMAGE_EXTENSIONS", "Source", "read_cifar10", "read_digits", "read_image_folder", "stratified_split"]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

# (in_channels, num_classes, native input size) of the data sets whose shape is known without reading them.

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_META = "batches.meta"
_CIFAR_SIDE = 32
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True)
class Source:
    """Raw images of each split: ``(N, C, H, W)`` arrays with values in ``[0, scale]``, int labels."""

    images: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    scale: float
    class_names: tuple[str, ...]
    where: str




# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------
def read_digits(val_fraction: float, test_fraction: float, seed: int) -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    parts = stratified_split(labels, {"val": val_fraction, "test": test_fraction}, seed)
    return Source(
        images={s: images[i] for s, i in parts.items()},
        labels={s: labels[i] for s, i in parts.items()},
        scale=16.0,
        class_names=tuple(str(int(c)) for c in bunch.target_names),
        where="sklearn.datasets.load_digits",
    )


def read_cifar10(root: Path, val_fraction: float, seed: int) -> Source:
    if not root.is_dir():
        raise ValueError(
            f"CIFAR-10 directory {str(root)!r} does not exist; expected a directory holding "
            f"{', '.join((*_CIFAR_TRAIN, _CIFAR_TEST, _CIFAR_META))}"
        )
    if not (root / _CIFAR_META).exists() and (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    meta = _read_pickle(root / _CIFAR_META)
    names = _field(meta, "label_names", root / _CIFAR_META, "a list of 10 class names")
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(
            f"CIFAR-10 meta file {str(root / _CIFAR_META)!r}: 'label_names' must be a non-empty "
            f"list of class names, got {type(names).__name__}"
        )
    class_names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
    train_parts = [_cifar_batch(root / name, len(class_names)) for name in _CIFAR_TRAIN]
    train_images = np.concatenate([p[0] for p in train_parts])
    train_labels = np.concatenate([p[1] for p in train_parts])
    test_images, test_labels = _cifar_batch(root / _CIFAR_TEST, len(class_names))
    parts = stratified_split(train_labels, {"val": val_fraction}, seed)
    return Source(
        images={
            "train": train_images[parts["train"]],
            "val": train_images[parts["val"]],
            "test": test_images,
        },
        labels={
            "train": train_labels[parts["train"]],
            "val": train_labels[parts["val"]],
            "test": test_labels,
        },
        scale=255.0,
        class_names=class_names,
        where=str(root),
    )


def _cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path)
    expected = f"a uint8 array of shape (N, {3 * _CIFAR_SIDE * _CIFAR_SIDE})"
    data = _field(batch, "data", path, expected)
    labels = _field(batch, "labels", path, "a list of N integer labels")
    array = np.asarray(data)
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 3 * _CIFAR_SIDE * _CIFAR_SIDE:
        raise ValueError(
            f"CIFAR-10 batch {str(path)!r}: 'data' must be {expected}, got {array.dtype} of shape {array.shape}"
        )
    try:
        targets = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"CIFAR-10 batch {str(path)!r}: 'labels' must be a list of integers") from None
    if len(targets) != len(array):
        raise ValueError(f"CIFAR-10 batch {str(path)!r}: {len(array)} images but {len(targets)} labels")
    if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"CIFAR-10 batch {str(path)!r}: labels must be in 0..{num_classes - 1}, "
            f"got {targets.min()}..{targets.max()}"
        )
    return array.reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE), targets


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds builtin containers and numpy arrays only: CIFAR batches need nothing else."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(
            f"CIFAR-10 file {str(path)!r} is missing; expected the official python version "
            f"({', '.join((*_CIFAR_TRAIN, _CIFAR_TEST, _CIFAR_META))})"
        )
    try:
        with path.open("rb") as handle:
            return _SafeUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(
            f"CIFAR-10 file {str(path)!r} is not a CIFAR-10 python batch ({err}); expected a "
            "pickled dict with b'data' and b'labels' (or b'label_names' for batches.meta)"
        ) from None


def _field(obj: Any, key: str, path: Path, expected: str) -> Any:
    if isinstance(obj, dict):
        for candidate in (key.encode(), key):
            if candidate in obj:
                return obj[candidate]
    raise ValueError(f"CIFAR-10 file {str(path)!r} has no {key!r} entry; expected a dict with {key!r}: {expected}")


def read_image_folder(root: Path, input_size: int | None, val_fraction: float, test_fraction: float, seed: int) -> Source:
    if not root.is_dir():
        raise ValueError(
            f"image folder {str(root)!r} does not exist; expected a directory of class folders "
            "root/<class>/<image> or root/train|val|test/<class>/<image>"
        )
    if (root / "train").is_dir():
        missing = [s for s in ("val", "test") if not (root / s).is_dir()]
        if missing:
            raise ValueError(
                f"image folder {str(root)!r} has a 'train' folder but no {' or '.join(missing)} "
                "folder; a split folder needs train/, val/ and test/ (or no train/ folder at all, "
                "to split root/<class>/ with the fractions)"
            )
        class_names = _class_dirs(root / "train")
        files: dict[str, list[tuple[Path, int]]] = {"train": _class_files(root / "train", class_names)}
        for split in ("val", "test"):
            unknown = sorted(set(_class_dirs(root / split, allow_empty=True)) - set(class_names))
            if unknown:
                raise ValueError(
                    f"{str(root / split)!r} has class folder(s) {unknown} that are not in "
                    f"{str(root / 'train')!r}; allowed: {list(class_names)}"
                )
            present = [c for c in class_names if (root / split / c).is_dir()]
            files[split] = _class_files(root / split, class_names, present)
    else:
        class_names = _class_dirs(root)
        every = _class_files(root, class_names)
        labels = np.array([label for _, label in every], dtype=np.int64)
        parts = stratified_split(labels, {"val": val_fraction, "test": test_fraction}, seed)
        files = {split: [every[i] for i in index] for split, index in parts.items()}
    arrays = {split: [_read_image(path) for path, _ in entries] for split, entries in files.items()}
    gray = all(a.ndim == 2 for images in arrays.values() for a in images)
    if input_size is None:
        shapes = {a.shape[:2] for images in arrays.values() for a in images}
        if len(shapes) != 1 or next(iter(shapes))[0] != next(iter(shapes))[1]:
            raise ValueError(
                f"images under {str(root)!r} are not all square and of one size (sizes "
                f"{sorted(shapes)[:4]}); set input_size to resize them"
            )
    if input_size is not None:  # uint8 images now, float32 copies later: refuse before resizing anything
        count = sum(len(items) for items in arrays.values())
        check_fits(
            count * (1 if gray else 3) * input_size**2 * (1 + 2 * FLOAT_BYTES),
            f"data.input_size {input_size} for {count} images",
            "choose a smaller data.input_size or set data.train_limit",
        )
    images = {
        split: _stack([_to_chw(a, gray, input_size) for a in items], 1 if gray else 3)
        for split, items in arrays.items()
    }
    return Source(
        images=images,
        labels={s: np.array([label for _, label in entries], dtype=np.int64) for s, entries in files.items()},
        scale=255.0,
        class_names=class_names,
        where=str(root),
    )


def _class_dirs(directory: Path, allow_empty: bool = False) -> tuple[str, ...]:
    names = tuple(sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not names and not allow_empty:
        raise ValueError(
            f"image folder {str(directory)!r} has no class folders; expected {str(directory)!r}/<class>/<image files>"
        )
    return names


def _class_files(
    directory: Path, class_names: Sequence[str], present: Iterable[str] | None = None
) -> list[tuple[Path, int]]:
    entries: list[tuple[Path, int]] = []
    for name in class_names if present is None else present:
        folder = directory / name
        found = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not found:
            raise ValueError(
                f"class folder {str(folder)!r} has no images; expected files with one of the "
                f"extensions {', '.join(IMAGE_EXTENSIONS)}"
            )
        label = class_names.index(name)
        entries.extend((p, label) for p in found)
    return entries


def _read_image(path: Path) -> np.ndarray:
    """(H, W) uint8 for a grayscale image, (H, W, 3) uint8 otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            mode = "L" if image.mode in _GRAY_MODES else "RGB"
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(
            f"cannot read image {str(path)!r} ({err}); expected a readable image file ({', '.join(IMAGE_EXTENSIONS)})"
        ) from None


def _to_chw(array: np.ndarray, gray: bool, input_size: int | None) -> np.ndarray:
    from PIL import Image

    if not gray and array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if input_size is not None and array.shape[:2] != (input_size, input_size):
        resized = Image.fromarray(array).resize((input_size, input_size), Image.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _stack(arrays: list[np.ndarray], channels: int) -> np.ndarray:
    if not arrays:
        return np.zeros((0, channels, 1, 1), dtype=np.uint8)
    return np.stack(arrays)



def stratified_split(labels: np.ndarray, fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Indices of "train" and of each named split, per class, from a generator seeded with ``seed``."""
    rng = np.random.default_rng([seed, 0])
    chosen: dict[str, list[np.ndarray]] = {"train": [], **{name: [] for name in fractions}}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for name, fraction in fractions.items():
            count = min(math.floor(len(members) * fraction + 0.5), len(members) - 1 - start)
            chosen[name].append(members[start : start + max(count, 0)])
            start += max(count, 0)
        chosen["train"].append(members[start:])
    return {name: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64) for name, parts in chosen.items()}


