"""Embedded digit scenes and the batch interface, checked against the raw MNIST digits."""

import itertools

import numpy as np
import pytest

from jaxsal.data import (
    MEAN,
    STD,
    batches,
    composite_scenes,
    digit_scenes,
    mnist_digits,
    source_indices,
)


def nonzero_box(canvas):
    """(y0, x0, y1, x1), half-open, of the pixels above the background, by hand."""
    ys, xs = np.nonzero(canvas > 1e-4)  # digit pixels are >= 1/255; background ~1e-9
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def test_mnist_is_the_real_data_set():
    x, y = mnist_digits()
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))


def test_splits_are_disjoint_and_stratified():
    _, y = mnist_digits()
    parts = {s: source_indices(s) for s in ("train", "validation", "test")}
    for a, b in itertools.combinations(parts.values(), 2):
        assert not set(a.tolist()) & set(b.tolist())
    assert sum(len(p) for p in parts.values()) == 5000
    for s, per_class in (("train", 400), ("validation", 50), ("test", 50)):
        np.testing.assert_array_equal(np.bincount(y[parts[s]]), np.full(10, per_class))
    # Scenes of every split and seed draw only on their split's digits.
    for s, seed in (("validation", 0), ("test", 5)):
        src = digit_scenes(s, size=40, seed=seed, n=30).source
        assert set(src.tolist()) <= set(parts[s].tolist())
    with pytest.raises(ValueError, match="unknown split"):
        digit_scenes("val")


def test_same_seed_same_scenes_other_seed_other_scenes():
    a = digit_scenes("validation", size=48, seed=3, n=20)
    b = digit_scenes("validation", size=48, seed=3, n=20)
    c = digit_scenes("validation", size=48, seed=4, n=20)
    for f in ("images", "labels", "boxes", "source", "offsets"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.offsets, c.offsets)
    d = digit_scenes("validation", size=48, seed=(3, 1), n=20)
    np.testing.assert_array_equal(
        d.images, digit_scenes("validation", size=48, seed=(3, 1), n=20).images
    )
    assert not np.array_equal(a.images, d.images)
    # Explicit source digits: the same digits at new positions.
    e = digit_scenes("validation", size=48, seed=9, source=a.source)
    np.testing.assert_array_equal(e.source, a.source)
    np.testing.assert_array_equal(e.labels, a.labels)
    assert not np.array_equal(e.offsets, a.offsets)
    with pytest.raises(ValueError, match="outside the validation split"):
        digit_scenes("validation", source=source_indices("train")[:3])


def test_scene_holds_the_digit_and_its_tight_box():
    digits, labels = mnist_digits()
    s = digit_scenes("test", size=64, seed=1, n=40)
    assert s.images.shape == (40, 64, 64, 1) and s.images.dtype == np.float32
    assert s.labels.dtype == np.int32 and s.boxes.shape == (40, 4)
    canvas = s.canvas()
    for i in range(len(s)):
        oy, ox = s.offsets[i]
        expected = np.zeros((64, 64))
        expected[oy : oy + 28, ox : ox + 28] = digits[s.source[i]] / 255.0
        np.testing.assert_allclose(canvas[i], expected, atol=1e-6)
        np.testing.assert_array_equal(s.boxes[i], nonzero_box(canvas[i]))
        assert s.labels[i] == labels[s.source[i]]


def test_default_split_sizes_and_normalisation():
    s = digit_scenes("train")
    assert s.images.shape == (4000, 96, 96, 1)
    np.testing.assert_array_equal(np.sort(s.source), source_indices("train"))
    # The documented constants are the pixel statistics of noiseless 96x96 canvases.
    assert abs(float(s.images.mean())) < 0.01 and abs(float(s.images.std()) - 1) < 0.02
    np.testing.assert_allclose(s.images.min(), -MEAN / STD, rtol=1e-6)


def test_noise_keeps_labels_and_boxes():
    clean = digit_scenes("validation", size=48, seed=2, n=10)
    noisy = digit_scenes("validation", size=48, seed=2, n=10, noise=0.05)
    np.testing.assert_array_equal(clean.boxes, noisy.boxes)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    assert not np.array_equal(clean.images, noisy.images)
    c = noisy.canvas()
    assert c.min() >= -1e-6 and c.max() <= 1 + 1e-6


def test_composites_hold_two_classes_in_two_cells():
    digits, labels = mnist_digits()
    s = composite_scenes("validation", classes=(3, 8), size=64, seed=0, n=25)
    assert s.images.shape == (25, 64, 64, 1)
    assert s.labels.shape == (25, 2) and s.boxes.shape == (25, 2, 4) and s.cells.shape == (25, 2)
    np.testing.assert_array_equal(s.labels, np.tile([3, 8], (25, 1)))
    np.testing.assert_array_equal(labels[s.source], s.labels)
    assert np.all(s.cells[:, 0] != s.cells[:, 1])
    assert set(s.source.ravel().tolist()) <= set(source_indices("validation").tolist())
    canvas = s.canvas()
    for i in range(len(s)):
        left = canvas[i].copy()
        for t in range(2):
            r, col = divmod(int(s.cells[i, t]), 2)
            cell = canvas[i, 32 * r : 32 * r + 32, 32 * col : 32 * col + 32]
            y0, x0, y1, x1 = nonzero_box(cell) + np.array([32 * r, 32 * col] * 2)
            np.testing.assert_array_equal(s.boxes[i, t], [y0, x0, y1, x1])
            oy, ox = s.offsets[i, t]
            np.testing.assert_allclose(
                canvas[i, oy : oy + 28, ox : ox + 28], digits[s.source[i, t]] / 255.0, atol=1e-6
            )
            left[32 * r : 32 * r + 32, 32 * col : 32 * col + 32] = 0
        assert np.abs(left).max() < 1e-4  # the two other cells are empty
    # The cells vary over scenes (random positions in the 2x2 grid).
    assert len({tuple(c) for c in s.cells.tolist()}) > 4


def test_composite_arguments_are_checked():
    with pytest.raises(ValueError, match="two different digits"):
        composite_scenes("train", classes=(3, 3), n=2)
    with pytest.raises(ValueError, match="size >= 56"):
        composite_scenes("train", classes=(3, 8), size=48, n=2)
    assert len(composite_scenes("test", classes=(0, 1), size=56)) == 200


def test_batches_keys_shapes_and_epochs():
    s = digit_scenes("test", size=32, seed=0, n=10)
    out = list(batches(s, 4, shuffle=True, seed=1, epochs=2))
    assert [len(b["image"]) for b in out] == [4, 4, 2, 4, 4, 2]
    for b in out:
        assert set(b) == {"image", "label", "box"}
        assert b["image"].shape[1:] == (32, 32, 1) and b["image"].dtype == np.float32
        assert b["label"].dtype == np.int32 and b["box"].shape[1:] == (4,)
    # Each epoch is a permutation of all rows, in a different order per epoch.
    rows = [np.concatenate([b["label"] for b in out[i : i + 3]]) for i in (0, 3)]
    for r in rows:
        np.testing.assert_array_equal(np.sort(r), np.sort(s.labels))
    order = [np.concatenate([b["box"] for b in out[i : i + 3]]) for i in (0, 3)]
    assert not np.array_equal(order[0], order[1])
    again = list(batches(s, 4, shuffle=True, seed=1, epochs=2))
    for a, b in zip(out, again):
        np.testing.assert_array_equal(a["box"], b["box"])
    plain = list(batches(s, 4, drop_remainder=True))
    assert len(plain) == 2
    np.testing.assert_array_equal(plain[0]["label"], s.labels[:4])
    endless = batches(s.as_dict(), 3, epochs=None)
    assert len(list(itertools.islice(endless, 25))) == 25
    with pytest.raises(ValueError, match="rows"):
        next(batches({"image": np.zeros((3, 2, 2, 1)), "label": np.zeros(2)}, 2))
