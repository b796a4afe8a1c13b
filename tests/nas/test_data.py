"""Data sets in memory: digits split and normalisation, CIFAR-10 and image-folder formats, seeded loaders."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.core.data import DATASETS, DataBundle, dataset_facts, load_dataset
from nas.core.data.formats import stratified_split
from supernet import make_loader

# --------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits8() -> DataBundle:
    return load_dataset("digits")


def _raw(bundle: DataBundle, split: str) -> torch.Tensor:
    """Undo the normalisation: images back in [0, 1] units."""
    x = getattr(bundle, split).tensors[0]
    mean = torch.tensor(bundle.mean).view(1, -1, 1, 1)
    std = torch.tensor(bundle.std).view(1, -1, 1, 1)
    return x * std + mean


def test_digits_split_sizes_classes_and_shape(digits8: DataBundle) -> None:
    # 70/15/15 per class with half-up rounding (class sizes 174..183): 27 or 26 per class in val and test.
    assert digits8.sizes() == {"train": 1259, "val": 269, "test": 269}
    assert sum(digits8.sizes().values()) == 1797
    assert (digits8.in_channels, digits8.num_classes, digits8.input_size) == (1, 10, 8)
    assert digits8.class_names == tuple(str(i) for i in range(10))
    assert digits8.train.tensors[0].shape == (1259, 1, 8, 8)
    assert digits8.train.tensors[0].dtype == torch.float32 and digits8.train.tensors[1].dtype == torch.int64
    for split in ("train", "val", "test"):
        counts = torch.bincount(getattr(digits8, split).tensors[1], minlength=10)
        share = counts.float() / counts.sum()
        assert share.min() > 0.08 and share.max() < 0.12  # stratified: every class about 10 %
    assert digits8.space_overrides() == {"in_channels": 1, "num_classes": 10, "input_size": 8}
    assert dataset_facts("digits") == (1, 10, 8) and dataset_facts("image_folder") is None


def test_digits_normalised_with_the_train_statistics(digits8: DataBundle) -> None:
    train = digits8.train.tensors[0]
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std(correction=0)) - 1.0) < 1e-4
    # val and test use the train mean/std: undoing it gives back digits' integer levels 0..16 (/16).
    for split in ("train", "val", "test"):
        levels = _raw(digits8, split) * 16
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert float(levels.min()) > -1e-3 and float(levels.max()) < 16 + 1e-3
    # Their own statistics differ from the train ones, so they were not normalised with their own.
    assert abs(float(digits8.val.tensors[0].mean())) > 1e-4


def test_digits_is_deterministic_and_the_split_seed_changes_it(digits8: DataBundle) -> None:
    again = load_dataset("digits")
    for split in ("train", "val", "test"):
        a, b = getattr(digits8, split).tensors, getattr(again, split).tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = load_dataset("digits", split_seed=1)
    assert other.sizes() == digits8.sizes()
    assert not torch.equal(other.val.tensors[0], digits8.val.tensors[0])


def test_digits_resized_bilinear_and_renormalised() -> None:
    bundle = load_dataset("digits", input_size=16, val_fraction=0.2, test_fraction=0.1)
    assert bundle.input_size == 16 and bundle.train.tensors[0].shape[1:] == (1, 16, 16)
    assert bundle.sizes()["val"] > bundle.sizes()["test"]
    train = bundle.train.tensors[0]
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std(correction=0)) - 1.0) < 1e-4
    # Bilinear upsampling stays within the range of the 8x8 originals.
    raw = _raw(bundle, "train")
    assert float(raw.min()) > -1e-4 and float(raw.max()) < 1 + 1e-4


def test_limits_give_a_seeded_class_balanced_subset(digits8: DataBundle) -> None:
    small = load_dataset("digits", train_limit=50, val_limit=20)
    assert small.sizes() == {"train": 50, "val": 20, "test": 269}
    assert torch.bincount(small.train.tensors[1], minlength=10).tolist() == [5] * 10
    assert torch.equal(small.train.tensors[1], load_dataset("digits", train_limit=50).train.tensors[1])
    # The statistics are those of the 50 kept images.
    assert abs(float(small.train.tensors[0].mean())) < 1e-5
    assert small.mean != digits8.mean


def test_stratified_split_is_a_partition() -> None:
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    parts = stratified_split(labels, {"val": 0.2, "test": 0.3}, seed=5)
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(len(labels)))  # disjoint and complete
    assert [np.sum(labels[parts["test"]] == c) for c in range(4)] == [3, 2, 1, 0]
    assert [np.sum(labels[parts["val"]] == c) for c in range(4)] == [2, 1, 1, 0]
    assert all(np.sum(labels[parts["train"]] == c) >= 1 for c in range(4))  # a class of one stays in train
    again = stratified_split(labels, {"val": 0.2, "test": 0.3}, seed=5)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'; allowed: digits, strokes, cifar10, image_folder"),
        ({"root": "/tmp"}, "takes no root"),
        ({"val_fraction": 0.0}, "val_fraction must be a number strictly between 0 and 1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
        ({"input_size": 0}, "input_size must be a positive integer"),
        ({"train_limit": True}, "train_limit must be a positive integer"),
        ({"dataset": "cifar10"}, "needs a root directory"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)  # type: ignore[arg-type]
    assert set(DATASETS) == {"digits", "strokes", "cifar10", "image_folder"}


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------


def _labels_of(loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    return [int(v) for _, y in loader for v in y]


def test_make_loader_sequential_shuffled_and_generic_datasets(digits8: DataBundle) -> None:
    labels = digits8.val.tensors[1].tolist()
    plain = make_loader(digits8.val, 64)
    assert _labels_of(plain) == labels and len(plain) == 5  # 269 = 4 * 64 + 13, last batch kept
    shuffled = _labels_of(make_loader(digits8.val, 64, shuffle=True, seed=1))
    assert sorted(shuffled) == sorted(labels) and shuffled != labels
    assert shuffled == _labels_of(make_loader(digits8.val, 64, shuffle=True, seed=1))
    # A non-tensor dataset goes through the ordinary per-sample path, in the same order for the same seed.
    as_list = [digits8.val[i] for i in range(len(digits8.val))]
    generic = _labels_of(make_loader(as_list, 64, shuffle=True, seed=1))  # type: ignore[arg-type]
    assert generic == shuffled
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_loader(digits8.val, 0)


# --------------------------------------------------------------------------------------------------
# CIFAR-10 format
# --------------------------------------------------------------------------------------------------
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle)


def _cifar_dir(root: Path, per_batch: int = 10, seed: int = 0) -> Path:
    """The official python layout with 5 x ``per_batch`` train and 10 test images (keys as bytes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(per_batch) % 10]
        _write_pickle(root / f"data_batch_{i}", {b"batch_label": b"x", b"labels": labels, b"data": data})
    test = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8)
    _write_pickle(root / "test_batch", {b"labels": list(range(10)), b"data": test})
    _write_pickle(root / "batches.meta", {b"label_names": [n.encode() for n in CIFAR_NAMES]})
    return root


def test_cifar10_format_splits_channels_and_pixel_layout(tmp_path: Path) -> None:
    root = _cifar_dir(tmp_path / "cifar")
    bundle = load_dataset("cifar10", root=root, val_fraction=0.2)
    # 50 train images, 5 per class: 1 per class to val; the official test batch is the test split.
    assert bundle.sizes() == {"train": 40, "val": 10, "test": 10}
    assert (bundle.in_channels, bundle.num_classes, bundle.input_size) == (3, 10, 32)
    assert bundle.class_names == tuple(CIFAR_NAMES)
    # Row layout of the format: 1024 red, then 1024 green, then 1024 blue values, each row-major.
    with (root / "test_batch").open("rb") as handle:
        test = pickle.load(handle)
    expected = torch.from_numpy(test[b"data"][3].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(_raw(bundle, "test")[3], expected, atol=1e-5)
    assert bundle.test.tensors[1].tolist() == list(range(10))
    assert abs(float(bundle.train.tensors[0][:, 2].mean())) < 1e-5  # per-channel normalisation
    # The parent of the official cifar-10-batches-py folder works too, and resizing applies.
    parent = tmp_path / "parent"
    _cifar_dir(parent / "cifar-10-batches-py")
    small = load_dataset("cifar10", root=parent, input_size=16, val_fraction=0.2)
    assert small.train.tensors[0].shape == (40, 3, 16, 16) and small.source.endswith("cifar-10-batches-py")


def test_cifar10_string_keys_are_accepted(tmp_path: Path) -> None:
    root = _cifar_dir(tmp_path / "cifar")
    data = np.zeros((10, 3072), dtype=np.uint8)
    _write_pickle(root / "test_batch", {"labels": list(range(10)), "data": data})
    assert load_dataset("cifar10", root=root).sizes()["test"] == 10


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("data_batch_3", None, r"data_batch_3' is missing"),
        ("test_batch", b"not a pickle at all", r"test_batch' is not a CIFAR-10 python batch"),
        ("data_batch_1", [1, 2, 3], r"data_batch_1' has no 'data' entry"),
        ("data_batch_2", {b"data": np.zeros((10, 100), np.uint8), b"labels": [0] * 10}, r"'data' must be a uint8"),
        ("data_batch_2", {b"data": np.zeros((10, 3072), np.float32), b"labels": [0] * 10}, r"got float32"),
        ("data_batch_4", {b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 9}, r"10 images but 9 labels"),
        ("data_batch_5", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels must be in 0..9"),
        ("batches.meta", {b"label_names": "cats"}, r"'label_names' must be a non-empty list"),
    ],
)
def test_cifar10_bad_files_name_the_file(tmp_path: Path, name: str, content: object, match: str) -> None:
    root = _cifar_dir(tmp_path / "cifar")
    if content is None:
        (root / name).unlink()
    elif isinstance(content, bytes):
        (root / name).write_bytes(content)
    else:
        _write_pickle(root / name, content)
    with pytest.raises(ValueError, match=match):
        load_dataset("cifar10", root=root)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_cifar10_pickles_cannot_run_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _cifar_dir(tmp_path / "cifar")
    _write_pickle(root / "data_batch_1", {b"data": _Payload(), b"labels": []})
    with pytest.raises(ValueError, match=r"refusing to load builtins.print"):
        load_dataset("cifar10", root=root)
    assert "unpickled!" not in capsys.readouterr().out


def test_cifar10_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"CIFAR-10 directory '.*nowhere' does not exist; expected"):
        load_dataset("cifar10", root=tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------------
# image folders
# --------------------------------------------------------------------------------------------------


def _png(path: Path, value: int, size: tuple[int, int] = (12, 12), mode: str = "L") -> None:
    """An image whose top-left pixel encodes ``value`` (an id), the rest a constant shade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), 100, dtype=np.uint8)
    array[0, 0] = value
    Image.fromarray(array, mode=mode).save(path)


def _folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (12, 12)) -> Path:
    ident = 0
    for name, count in classes.items():
        for i in range(count):
            _png(root / name / f"img{i}.png", ident, size)
            ident += 1
    return root


def _ids(bundle: DataBundle, split: str) -> list[int]:
    return [round(float(v) * 255) for v in _raw(bundle, split)[:, 0, 0, 0]]


def test_image_folder_split_is_stratified_disjoint_and_complete(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"cat": 10, "dog": 10, "emu": 10})
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    (root / ".hidden").mkdir()
    bundle = load_dataset("image_folder", root=root, val_fraction=0.2, test_fraction=0.2)
    assert bundle.sizes() == {"train": 18, "val": 6, "test": 6}
    assert bundle.class_names == ("cat", "dog", "emu")
    assert (bundle.in_channels, bundle.num_classes, bundle.input_size) == (1, 3, 12)
    ids = {split: _ids(bundle, split) for split in ("train", "val", "test")}
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == list(range(30))
    # Image i of the folder listing belongs to class i // 10.
    for split in ("train", "val", "test"):
        assert [i // 10 for i in ids[split]] == getattr(bundle, split).tensors[1].tolist()
    assert torch.bincount(bundle.val.tensors[1]).tolist() == [2, 2, 2]
    again = load_dataset("image_folder", root=root, val_fraction=0.2, test_fraction=0.2)
    assert _ids(again, "val") == ids["val"]


def test_image_folder_color_and_resizing(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"a": 4, "b": 4}, size=(20, 10))
    _png(root / "b" / "color.png", 7, size=(9, 9), mode="RGB")
    with pytest.raises(ValueError, match=r"not all square and of one size.*set input_size"):
        load_dataset("image_folder", root=root, val_fraction=0.25, test_fraction=0.25)
    bundle = load_dataset("image_folder", root=root, input_size=8, val_fraction=0.25, test_fraction=0.25)
    assert bundle.in_channels == 3 and bundle.input_size == 8  # one color image makes every image RGB
    assert bundle.train.tensors[0].shape[1:] == (3, 8, 8) and len(bundle.mean) == 3


def test_image_folder_with_train_val_test_folders(tmp_path: Path) -> None:
    root = tmp_path / "split"
    _folder(root / "train", {"a": 3, "b": 3})
    _folder(root / "val", {"a": 1, "b": 2})
    _folder(root / "test", {"b": 2})  # a class may be absent from val or test
    bundle = load_dataset("image_folder", root=root)
    assert bundle.sizes() == {"train": 6, "val": 3, "test": 2}
    assert bundle.class_names == ("a", "b") and bundle.test.tensors[1].tolist() == [1, 1]
    _folder(root / "test", {"c": 1})
    with pytest.raises(ValueError, match=r"class folder\(s\) \['c'\] that are not in .*allowed: \['a', 'b'\]"):
        load_dataset("image_folder", root=root)


def test_image_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"image folder '.*missing' does not exist; expected a directory"):
        load_dataset("image_folder", root=tmp_path / "missing")
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match=r"'.*bare' has no class folders"):
        load_dataset("image_folder", root=tmp_path / "bare")
    root = _folder(tmp_path / "imgs", {"a": 4, "b": 4})
    (root / "empty").mkdir()
    (root / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder '.*empty' has no images; expected files with one of"):
        load_dataset("image_folder", root=root)
    (root / "empty" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(ValueError, match=r"cannot read image '.*broken\.png'"):
        load_dataset("image_folder", root=root)
    split = _folder(tmp_path / "split" / "train", {"a": 2}).parent
    (split / "val").mkdir()
    with pytest.raises(ValueError, match=r"has a 'train' folder but no test folder"):
        load_dataset("image_folder", root=split)
    tiny = _folder(tmp_path / "tiny", {"a": 2, "b": 2})
    with pytest.raises(ValueError, match=r"the val split of .*tiny' is empty"):
        load_dataset("image_folder", root=tiny)


def test_data_at_an_architectures_resolution_is_resized_once(digits8: DataBundle) -> None:
    from nas.core.data.resolution import ResolutionCache, at_resolution
    from supernet import resize_input

    assert at_resolution(digits8, digits8.input_size) is digits8
    bigger = at_resolution(digits8, 12)
    assert bigger.input_size == 12 and bigger.val.tensors[0].shape[1:] == (1, 12, 12)
    assert torch.equal(bigger.val.tensors[1], digits8.val.tensors[1])
    # The same resize the supernets apply to a raw batch inside forward.
    assert torch.equal(bigger.val.tensors[0][:5], resize_input(digits8.val.tensors[0][:5], 12))
    cache = ResolutionCache(digits8)
    assert cache(12) is cache(12) and len(cache) == 2
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        at_resolution(digits8, 0)
