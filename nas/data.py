"""Data sets in memory: scikit-learn's digits (the embedded default), CIFAR-10 and image folders.

Every loader returns a :class:`DataBundle`: train, val and test ``TensorDataset`` s of float32 images
``(N, C, S, S)`` and int64 labels, normalised per channel with the mean and standard deviation of the
*train* split (after resizing), plus what a search space needs to know (``in_channels``, ``num_classes``,
``input_size``).

Decisions
---------
- **Splits** are stratified and seeded (``split_seed``, independent of the run seed, so every run of a
  project sees the same split). Per class of ``n`` samples, ``round(n * test_fraction)`` go to test and
  ``round(n * val_fraction)`` to val (half-up rounding; at least one sample per class stays in train),
  the rest to train. Defaults 70/15/15: digits gives 1259 / 269 / 269 images. Each split is returned
  in ascending order of the original index. No split may be empty (``ValueError``).
- **digits**: ``sklearn.datasets.load_digits`` (1797 8x8 grayscale images, values 0..16, scaled to
  [0, 1]), 1 channel, classes ``"0"`` .. ``"9"``.
- **cifar10**: the official python format (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
  ``batches.meta``) in ``root`` or in ``root/cifar-10-batches-py``. Val is carved from the 50000 train
  images with ``val_fraction``; the official test batch is the test split (``test_fraction`` is unused).
  The batches are pickles: they are read with an unpickler that only rebuilds plain containers and
  numpy arrays, so a hostile file cannot run code.
- **image_folder**: ``root/<class>/<image>``, classes are the sorted sub-folder names, split with the
  fractions. If ``root/train`` exists the folder is taken as already split: ``root/train/<class>``,
  ``root/val/<class>`` and ``root/test/<class>`` must all exist (val and test may lack a class;
  every class of val and test must exist in train) and the fractions are unused. Files whose
  extension is not an image extension (see ``IMAGE_EXTENSIONS``) and hidden entries are ignored.
  Images are 1 channel if every image is grayscale, otherwise all are read as RGB (alpha dropped).
  With ``input_size`` set, every image is resized (Pillow, bilinear) to ``input_size x input_size``
  (non-square images are stretched); without it all images must be square and of the same size.
- **Resizing** of digits and CIFAR: bilinear (``align_corners=False``), antialiased when shrinking.
  ``input_size=None`` keeps the native size (8 for digits, 32 for CIFAR-10).
- **Limits** (``train_limit`` ...) cap a split to a seeded, class-balanced subset, applied after the
  split and before the normalisation statistics are computed.
- **Loaders** (:func:`make_loader`, :func:`epoch_loader`) own a seeded ``torch.Generator`` and use no
  worker processes: the order of a given (seed, epoch) is the same in every process, which resuming a
  training run depends on. They never draw from torch's global generator.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "DataBundle",
    "dataset_facts",
    "epoch_loader",
    "epoch_seed",
    "load_dataset",
    "make_loader",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "image_folder")
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
_FIXED_FACTS: Mapping[str, tuple[int, int, int]] = {"digits": (1, 10, 8), "cifar10": (3, 10, 32)}

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_META = "batches.meta"
_CIFAR_SIDE = 32
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_RESIZE_CHUNK = 4096  # images resized per call: bounds the float32 scratch memory


@dataclass(frozen=True)
class DataBundle:
    """Train, val and test splits in memory, normalised with the train split's statistics."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    in_channels: int
    num_classes: int
    input_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of the train split in [0, 1] units, before normalisation
    std: tuple[float, ...]
    source: str  # where the images came from (a directory, or "sklearn.datasets.load_digits")

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def space_overrides(self) -> dict[str, int]:
        """The keys of a search-space configuration that the data decides."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for the run directory and reports)."""
        return {
            "name": self.name,
            "source": self.source,
            "sizes": self.sizes(),
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def dataset_facts(dataset: str) -> tuple[int, int, int] | None:
    """``(in_channels, num_classes, native_size)`` when known without reading files, else None."""
    _check_name(dataset)
    return _FIXED_FACTS.get(dataset)


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------
def load_dataset(
    dataset: str = "digits",
    *,
    root: str | Path | None = None,
    input_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    train_limit: int | None = None,
    val_limit: int | None = None,
    test_limit: int | None = None,
) -> DataBundle:
    """Load ``dataset`` ("digits", "cifar10" or "image_folder") into memory; see the module docstring."""
    _check_name(dataset)
    _check_fractions(val_fraction, test_fraction)
    for key, value in (
        ("input_size", input_size),
        ("train_limit", train_limit),
        ("val_limit", val_limit),
        ("test_limit", test_limit),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} must be a positive integer or None, got {value!r}")
    if dataset == "digits":
        if root is not None:
            raise ValueError(f"dataset 'digits' is built in and takes no root (got {str(root)!r})")
        source = _digits(val_fraction, test_fraction, split_seed)
    else:
        if root is None:
            raise ValueError(f"dataset {dataset!r} needs a root directory (root=None given)")
        directory = Path(root).expanduser()
        if dataset == "cifar10":
            source = _cifar10(directory, val_fraction, split_seed)
        else:
            source = _image_folder(directory, input_size, val_fraction, test_fraction, split_seed)
    limits = {"train": train_limit, "val": val_limit, "test": test_limit}
    return _finish(dataset, source, input_size, limits, split_seed)


@dataclass(frozen=True)
class _Source:
    """Raw images of each split: ``(N, C, H, W)`` arrays with values in ``[0, scale]``, int labels."""

    images: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    scale: float
    class_names: tuple[str, ...]
    where: str


def _finish(
    name: str, source: _Source, input_size: int | None, limits: Mapping[str, int | None], seed: int
) -> DataBundle:
    tensors: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    for k, split in enumerate(("train", "val", "test")):
        labels = source.labels[split]
        if len(labels) == 0:
            total = sum(len(v) for v in source.labels.values())
            raise ValueError(
                f"the {split} split of {source.where!r} is empty ({total} images in all); "
                "add images or raise the split's fraction"
            )
        keep = _limit(labels, limits[split], seed, k + 1)
        images = source.images[split] if keep is None else source.images[split][keep]
        labels = labels if keep is None else labels[keep]
        x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(source.scale)
        tensors[split] = _resize(x, input_size)
        targets[split] = torch.from_numpy(labels.astype(np.int64))
    var, mean = torch.var_mean(tensors["train"], dim=(0, 2, 3), correction=0)
    std = var.sqrt()
    std = torch.where(std < 1e-8, torch.ones_like(std), std)  # a constant channel is left unscaled
    for x in tensors.values():
        x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    train = tensors["train"]
    return DataBundle(
        name=name,
        train=TensorDataset(train, targets["train"]),
        val=TensorDataset(tensors["val"], targets["val"]),
        test=TensorDataset(tensors["test"], targets["test"]),
        in_channels=int(train.shape[1]),
        num_classes=len(source.class_names),
        input_size=int(train.shape[-1]),
        class_names=source.class_names,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        source=source.where,
    )


# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------
def _digits(val_fraction: float, test_fraction: float, seed: int) -> _Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    parts = _stratified_split(labels, {"val": val_fraction, "test": test_fraction}, seed)
    return _Source(
        images={s: images[i] for s, i in parts.items()},
        labels={s: labels[i] for s, i in parts.items()},
        scale=16.0,
        class_names=tuple(str(int(c)) for c in bunch.target_names),
        where="sklearn.datasets.load_digits",
    )


def _cifar10(root: Path, val_fraction: float, seed: int) -> _Source:
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
    parts = _stratified_split(train_labels, {"val": val_fraction}, seed)
    return _Source(
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


def _image_folder(root: Path, input_size: int | None, val_fraction: float, test_fraction: float, seed: int) -> _Source:
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
        parts = _stratified_split(labels, {"val": val_fraction, "test": test_fraction}, seed)
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
    images = {
        split: _stack([_to_chw(a, gray, input_size) for a in items], 1 if gray else 3)
        for split, items in arrays.items()
    }
    return _Source(
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


# --------------------------------------------------------------------------------------------------
# splitting, limits, resizing
# --------------------------------------------------------------------------------------------------
def _stratified_split(labels: np.ndarray, fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
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


def _limit(labels: np.ndarray, limit: int | None, seed: int, stream: int) -> np.ndarray | None:
    """Sorted indices of a class-balanced seeded subset of ``limit`` samples, or None to keep all."""
    if limit is None or limit >= len(labels):
        return None
    order = np.random.default_rng([seed, stream]).permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)  # position of each sample among its class, in `order`
    for cls in np.unique(labels):
        members = order[labels[order] == cls]
        rank[members] = np.arange(len(members))
    position = np.empty(len(labels), dtype=np.int64)
    position[order] = np.arange(len(labels))
    picked = np.lexsort((position, rank))[:limit]  # round robin over classes, shuffled within each
    return np.sort(picked)


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or x.shape[-2:] == (size, size):
        return x
    shrink = size < max(x.shape[-2:])
    chunks = [
        F.interpolate(
            x[i : i + _RESIZE_CHUNK],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )
        for i in range(0, len(x), _RESIZE_CHUNK)
    ]
    return torch.cat(chunks)


def _check_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ValueError(f"{key} must be a number strictly between 0 and 1, got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 (train needs the rest), got {val_fraction} + {test_fraction}"
        )


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------
def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of ``epoch`` of a run seeded with ``seed`` (distinct for every pair)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader[Any]:
    """A single-process loader whose order depends only on ``seed`` (not on torch's global generator).

    Each call builds a fresh generator, so two loaders made with the same arguments yield the same
    batches; iterating one loader twice gives two different (but reproducible) orders. A
    ``TensorDataset`` is indexed a whole batch at a time, which is much faster than sample by sample.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, TensorDataset):
        base: RandomSampler | SequentialSampler = (
            RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        )
        batches = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=0, generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=0,
        generator=generator,
    )


def epoch_loader(
    dataset: Dataset[Any], batch_size: int, *, seed: int, epoch: int, drop_last: bool = True
) -> DataLoader[Any]:
    """The shuffled training loader of one epoch: the same (seed, epoch) gives the same batches.

    ``drop_last`` defaults to True so that batch normalisation never sees a batch of one sample; a
    training set smaller than one batch is then an error rather than an epoch without steps.
    """
    size = len(dataset)  # type: ignore[arg-type]
    if drop_last and size < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the training set ({size} samples) and "
            "drop_last is set; use a batch size of at most the training set size"
        )
    return make_loader(dataset, batch_size, shuffle=True, seed=epoch_seed(seed, epoch), drop_last=drop_last)
