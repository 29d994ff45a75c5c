"""Photo scenes (v2 of the embedded data), checked against scenes rebuilt by hand from the
raw MNIST digits and the digit-free backgrounds."""

import itertools
import time

import numpy as np
import pytest

from jaxsal.data import (
    MEAN,
    PHOTO_MEAN,
    PHOTO_STD,
    PHOTOS,
    STD,
    composite_scenes,
    digit_scenes,
    mnist_digits,
    photo_backgrounds,
    photo_composites,
    photo_scenes,
    photo_source_indices,
    photo_statistics,
    scene_variant,
)

SPLITS = ("train", "validation", "test")
FIELDS = ("images", "labels", "boxes", "masks", "source", "offsets")


def alpha_plane(digit, offset, size):
    """The digit's alpha (intensity / 255) placed on a size x size canvas, by hand."""
    plane = np.zeros((size, size))
    oy, ox = offset
    plane[oy : oy + 28, ox : ox + 28] = digit / 255.0
    return plane


def support_box(plane):
    """(y0, x0, y1, x1), half-open, of the nonzero pixels, by hand."""
    ys, xs = np.nonzero(plane)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def background_canvas(images):
    return images[..., 0].astype(np.float64) * PHOTO_STD + PHOTO_MEAN


def check_composited(canvas, background, planes):
    """canvas == (1 - a) * background + a * ink for each digit, ink by the documented rule."""
    expected = background.copy()
    for a in planes:
        peak = np.unravel_index(np.argmax(a), a.shape)
        ink = (canvas[peak] - (1 - a[peak]) * background[peak]) / a[peak]
        under = (background * a).sum() / a.sum()
        lo, hi = (0.85, 1.0) if under < 0.5 else (0.0, 0.15)
        assert lo - 1e-4 <= ink <= hi + 1e-4, (under, ink)
        expected = (1 - a) * expected + a * ink
    np.testing.assert_allclose(canvas, expected, atol=2e-5)


def test_photo_and_digit_splits_are_disjoint():
    names = {s: set(PHOTOS[s]) for s in SPLITS}
    assert [len(names[s]) for s in SPLITS] == [11, 3, 3]
    for a, b in itertools.combinations(names.values(), 2):
        assert not a & b
    _, y = mnist_digits()
    parts = {s: photo_source_indices(s) for s in SPLITS}
    for a, b in itertools.combinations(parts.values(), 2):
        assert not set(a.tolist()) & set(b.tolist())
    for s, per_class in zip(SPLITS, (340, 80, 80)):
        np.testing.assert_array_equal(
            np.bincount(y[parts[s]], minlength=10), np.full(10, per_class)
        )
    # Scenes of any seed draw only on their split's digits.
    for s, seed in (("validation", 0), ("test", (5, 2))):
        src = photo_scenes(s, size=56, seed=seed, n=900).source
        assert set(src.tolist()) == set(parts[s].tolist())
    with pytest.raises(ValueError, match="unknown split"):
        photo_scenes("val")
    with pytest.raises(ValueError, match="size >= 56"):
        photo_scenes("test", size=48)


def test_same_seed_same_scenes_other_seed_other_scenes():
    a = photo_scenes("validation", size=64, seed=3, n=20)
    b = photo_scenes("validation", size=64, seed=3, n=20)
    c = photo_scenes("validation", size=64, seed=4, n=20)
    d = photo_scenes("validation", size=64, seed=(3, 1), n=20)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    for other in (c, d):
        assert not np.array_equal(a.images, other.images)
        assert not np.array_equal(a.offsets, other.offsets)
    np.testing.assert_array_equal(
        photo_backgrounds("validation", size=64, seed=3, n=20),
        photo_backgrounds("validation", size=64, seed=3, n=20),
    )
    # Each split has its own streams: same seed, other positions.
    assert not np.array_equal(a.offsets, photo_scenes("test", size=64, seed=3, n=20).offsets)
    e = photo_composites("test", classes=(2, 5), size=64, seed=7, n=6)
    f = photo_composites("test", classes=(2, 5), size=64, seed=7, n=6)
    for field in (*FIELDS, "cells"):
        np.testing.assert_array_equal(getattr(e, field), getattr(f, field))


def test_scene_is_the_digit_alpha_composited_on_its_background():
    digits, labels = mnist_digits()
    s = photo_scenes("validation", size=64, seed=1, n=40)
    assert s.images.shape == (40, 64, 64, 1) and s.images.dtype == np.float32
    assert s.masks.shape == (40, 64, 64) and s.masks.dtype == bool
    assert s.boxes.shape == (40, 4) and s.labels.dtype == np.int32
    canvas = s.canvas().astype(np.float64)
    background = background_canvas(photo_backgrounds("validation", size=64, seed=1, n=40))
    for i in range(len(s)):
        a = alpha_plane(digits[s.source[i]], s.offsets[i], 64)
        assert 0 <= s.offsets[i].min() and s.offsets[i].max() <= 64 - 28
        np.testing.assert_array_equal(s.boxes[i], support_box(a))
        np.testing.assert_array_equal(s.masks[i], a > 0.5)
        assert s.labels[i] == labels[s.source[i]]
        check_composited(canvas[i], background[i], [a])
    # Both inks occur over a set of scenes.
    strokes = [canvas[i][s.masks[i]].mean() for i in range(len(s))]
    assert min(strokes) < 0.3 and max(strokes) > 0.7


def test_composites_hold_two_of_each_class_in_four_cells():
    digits, labels = mnist_digits()
    s = photo_composites("test", classes=(3, 8), size=64, seed=0, n=25)
    assert s.images.shape == (25, 64, 64, 1) and s.labels.shape == (25, 4)
    assert s.boxes.shape == (25, 4, 4) and s.masks.shape == (25, 4, 64, 64)
    np.testing.assert_array_equal(np.sort(s.labels, axis=1), np.tile([3, 3, 8, 8], (25, 1)))
    np.testing.assert_array_equal(labels[s.source], s.labels)
    np.testing.assert_array_equal(s.cells, np.tile(np.arange(4), (25, 1)))
    assert set(s.source.ravel().tolist()) <= set(photo_source_indices("test").tolist())
    assert len({tuple(r) for r in s.labels.tolist()}) > 3  # arrangements vary
    canvas = s.canvas().astype(np.float64)
    background = background_canvas(
        photo_backgrounds("test", size=64, seed=0, n=25, composites=True)
    )
    for i in range(len(s)):
        for c in (3, 8):  # two different digits of each class
            assert len(set(s.source[i][s.labels[i] == c].tolist())) == 2
        planes = []
        for t in range(4):
            r, col = divmod(t, 2)
            y0, x0, y1, x1 = s.boxes[i, t]
            assert 32 * r <= y0 < y1 <= 32 * r + 32 and 32 * col <= x0 < x1 <= 32 * col + 32
            a = alpha_plane(digits[s.source[i, t]], s.offsets[i, t], 64)
            np.testing.assert_array_equal(s.boxes[i, t], support_box(a))
            np.testing.assert_array_equal(s.masks[i, t], a > 0.5)
            planes.append(a)
        check_composited(canvas[i], background[i], planes)  # one background for all cells
    with pytest.raises(ValueError, match="two different digits"):
        photo_composites("train", classes=(3, 3), n=2)
    with pytest.raises(ValueError, match="size >= 56"):
        photo_composites("train", classes=(3, 8), size=48, n=2)
    assert len(photo_composites("validation", classes=(0, 1), size=56)) == 1000


def test_normalisation_constants_and_canvas_round_trip():
    mean, std = photo_statistics()
    assert abs(mean - PHOTO_MEAN) < 1e-3 and abs(std - PHOTO_STD) < 1e-3
    s = photo_scenes("train")
    assert s.images.shape == (3400, 64, 64, 1)
    np.testing.assert_array_equal(np.sort(s.source), photo_source_indices("train"))
    assert (s.mean, s.std) == (PHOTO_MEAN, PHOTO_STD)
    c = s.canvas()
    assert c.min() >= -1e-5 and c.max() <= 1 + 1e-5
    np.testing.assert_allclose((c - PHOTO_MEAN) / PHOTO_STD, s.images[..., 0], atol=1e-4)
    # The blank scenes keep their own constants.
    blank = digit_scenes("test", size=32, n=3)
    assert (blank.mean, blank.std) == (MEAN, STD)
    assert scene_variant("blank").scenes is digit_scenes
    assert scene_variant("blank").composites is composite_scenes
    assert scene_variant("photo").mean == PHOTO_MEAN
    with pytest.raises(ValueError, match="blank, photo"):
        scene_variant("natural")


@pytest.mark.parametrize("split", SPLITS)
def test_backgrounds_have_structure(split):
    s = photo_scenes(split, seed=2, n=300)
    outside = np.ones(s.masks.shape, bool)
    for i, (y0, x0, y1, x1) in enumerate(s.boxes):
        outside[i, y0:y1, x0:x1] = False
    c = s.canvas()
    stds = [c[i][outside[i]].std() for i in range(len(s))]
    # Faded to contrast 0.5 around mid-grey, a photo's texture keeps half its std
    # (about 0.1 of [0, 1] unfaded); a flat background would give 0.
    assert np.mean(stds) > 0.035
    blank = -MEAN / STD  # the blank scenes' background, -0.115
    bg = s.images[..., 0][outside]
    assert np.mean(np.abs(bg - blank) < 0.01) < 0.05
    assert np.mean(np.abs(bg - blank)) > 0.3
    # Backgrounds differ from scene to scene (different photos, scales and crops).
    bgs = photo_backgrounds(split, seed=2, n=300).reshape(300, -1)
    assert len(np.unique(bgs, axis=0)) > 290


def test_generation_time():
    photo_scenes("test", n=10)  # rescaled photos are cached once per process
    start = time.perf_counter()
    s = photo_scenes("test")
    print(f"2,000 test photo scenes in {time.perf_counter() - start:.2f} s")
    assert len(s) == 2000
