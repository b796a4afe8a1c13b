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
- **Loaders**: ``supernet.make_loader``, the project's one loader factory (seeded, single-process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nas.core.data.formats import IMAGE_EXTENSIONS, Source, read_cifar10, read_digits, read_image_folder
from nas.core.memory import FLOAT_BYTES, check_fits
from supernet import resize_input

__all__ = ["DATASETS", "IMAGE_EXTENSIONS", "DataBundle", "dataset_facts", "load_dataset", "resize_images"]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "image_folder")
_FIXED_FACTS: Mapping[str, tuple[int, int, int]] = {"digits": (1, 10, 8), "cifar10": (3, 10, 32)}
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
        source = read_digits(val_fraction, test_fraction, split_seed)
    else:
        if root is None:
            raise ValueError(f"dataset {dataset!r} needs a root directory (root=None given)")
        directory = Path(root).expanduser()
        if dataset == "cifar10":
            source = read_cifar10(directory, val_fraction, split_seed)
        else:
            source = read_image_folder(directory, input_size, val_fraction, test_fraction, split_seed)
    limits = {"train": train_limit, "val": val_limit, "test": test_limit}
    return _finish(dataset, source, input_size, limits, split_seed)


def _finish(
    name: str, source: Source, input_size: int | None, limits: Mapping[str, int | None], seed: int
) -> DataBundle:
    if len(source.class_names) < 2:
        raise ValueError(
            f"{source.where!r} has {len(source.class_names)} class(es) "
            f"({', '.join(source.class_names)[:80] or 'none'}); classification needs at least 2"
        )
    channels = int(source.images["train"].shape[1])
    count = sum(len(v) for v in source.labels.values())
    side = input_size or int(source.images["train"].shape[-1])
    check_fits(
        count * channels * side**2 * FLOAT_BYTES * 2,  # the float32 images and one resize buffer
        f"data.input_size {side} for {count} images",
        "choose a smaller data.input_size or set data.train_limit / val_limit / test_limit",
    )
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
        tensors[split] = resize_images(x, input_size)
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


def resize_images(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``x`` (N, C, H, W) at ``size`` x ``size``, a chunk at a time (bounded scratch memory); None: unchanged.

    Each chunk goes through ``supernet.resize_input``, the resize the supernets apply to a batch, so data
    resized here and a raw batch resized inside a supernet give the same numbers.
    """
    if size is None or x.shape[-2:] == (size, size):
        return x
    return torch.cat([resize_input(x[i : i + _RESIZE_CHUNK], size) for i in range(0, len(x), _RESIZE_CHUNK)])


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


