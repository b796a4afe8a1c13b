"""The generated ``strokes`` data set: deterministic, balanced, the right shapes, and loadable by name."""

from __future__ import annotations

import numpy as np
import pytest

from nas.core.config import ConfigError, load_config
from nas.core.data import load_dataset
from nas.core.data.synthetic import StrokeSpec, make_strokes


def test_the_same_seed_gives_the_same_images_and_another_seed_others() -> None:
    spec = StrokeSpec(samples_per_class=6)
    a, labels = make_strokes(spec)
    b, _ = make_strokes(spec)
    c, _ = make_strokes(StrokeSpec(samples_per_class=6, seed=spec.seed + 1))
    assert a.shape == (60, 1, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels).tolist() == [6] * 10
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_more_samples_per_class_keep_the_first_ones() -> None:
    small, _ = make_strokes(StrokeSpec(samples_per_class=3, num_classes=2, noise=0.0))
    large, _ = make_strokes(StrokeSpec(samples_per_class=5, num_classes=2, noise=0.0))
    assert np.array_equal(small[:3], large[:3]) and np.array_equal(small[3:], large[5:8])


def test_the_long_stroke_follows_the_class_orientation() -> None:
    """Without noise or distractors, the image's dominant gradient orientation is the class's."""
    spec = StrokeSpec(samples_per_class=20, distractors=0, noise=0.0, jitter_deg=0.0, num_classes=4)
    images, labels = make_strokes(spec)
    for cls in range(4):
        gy, gx = np.gradient(images[labels == cls, 0], axis=(1, 2))
        # structure tensor: strokes run perpendicular to the dominant gradient
        jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
        gradient_angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
        stroke_angle = (gradient_angle + np.pi / 2) % np.pi
        error = abs((stroke_angle - spec.class_angle(cls) + np.pi / 2) % np.pi - np.pi / 2)
        assert error < np.radians(10), (cls, np.degrees(stroke_angle))


def test_load_dataset_splits_and_refuses_a_root(tmp_path) -> None:
    bundle = load_dataset("strokes", val_fraction=0.4, test_fraction=0.25)
    assert bundle.sizes() == {"train": 3500, "val": 4000, "test": 2500}
    assert (bundle.in_channels, bundle.num_classes, bundle.input_size) == (1, 10, 16)
    assert bundle.class_names[1] == "18deg" and "strokes v2" in bundle.source
    with pytest.raises(ValueError, match="takes no root"):
        load_dataset("strokes", root=tmp_path)


def test_the_named_config_strokes_and_a_missing_file() -> None:
    cfg = load_config("strokes")
    assert cfg.name == "strokes" and cfg.data.dataset == "strokes" and cfg.supernet.epochs == 20
    assert (cfg.data.val_fraction, cfg.data.test_fraction) == (0.4, 0.25)
    with pytest.raises(ConfigError, match=r"built-in names: .*strokes"):
        load_config("no-such-config.yaml")


BAD_SPECS = [
    {"size": 7},
    {"num_classes": 1},
    {"long_min": 9.0, "long_max": 8.0},
    {"short_min": 0.0},
    {"contrast_min": 0.8, "contrast_max": 0.5},
    {"noise": -1.0},
]


@pytest.mark.parametrize("bad", BAD_SPECS)
def test_bad_parameters_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        StrokeSpec(**bad)
