"""The pointing game and class discrimination on hand-made maps and boxes."""

import numpy as np
import pytest

from jaxsal import pointing as pg


def peak_maps(points, size=40):
    maps = np.zeros((len(points), size, size))
    for i, (y, x) in enumerate(points):
        maps[i, y, x] = 1.0
    return maps


def test_hits_with_tolerance_by_hand():
    box = np.array([10, 10, 20, 20])  # pixels 10..19
    # inside; 15 px right of the last column; 15 px + 1 right; diagonal 9, 12 -> 15 px exactly
    maps = peak_maps([(15, 15), (15, 34), (15, 35), (28, 31)], size=50)
    hits = pg.pointing_hits(maps, np.stack([box] * 4), tolerance=15)
    np.testing.assert_array_equal(hits, [True, True, False, True])
    np.testing.assert_array_equal(pg.pointing_hits(maps, np.stack([box] * 4), tolerance=0),
                                  [True, False, False, False])  # fmt: skip


def test_any_box_of_the_class_counts_and_empty_misses():
    maps = peak_maps([(2, 2), (30, 30), (5, 5)])
    boxes = [np.array([[20, 20, 35, 35], [0, 0, 4, 4]]), np.array([[0, 0, 3, 3]]), np.zeros((0, 4))]
    np.testing.assert_array_equal(pg.pointing_hits(maps, boxes, tolerance=0), [True, False, False])


def test_unique_maxima_every_rule_agrees_with_brute_force():
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(30, 24, 24))  # continuous values: no ties
    y0, x0 = rng.integers(0, 16, size=(2, 30))
    boxes = np.stack([y0, x0, y0 + 6, x0 + 5], axis=1)
    for tol in (0.0, 3.0):
        want = []
        for m, (b0, b1, b2, b3) in zip(maps, boxes):
            py, px = divmod(int(m.argmax()), 24)
            ys, xs = np.mgrid[b0:b2, b1:b3]
            want.append(np.hypot(ys - py, xs - px).min() <= tol)
        for rule in pg.TIES:
            got = pg.pointing_hits(maps, boxes, tolerance=tol, ties=rule, seed=1)
            np.testing.assert_array_equal(got, want)


def test_accuracy_per_class_and_mean_over_classes():
    acc = pg.pointing_accuracy([True, False, True, True], [3, 3, 5, 5])
    assert acc["per_class"] == {3: 0.5, 5: 1.0}
    assert acc["overall"] == 0.75 and acc["mean_over_classes"] == 0.75 and acc["n"] == 4
    acc = pg.pointing_accuracy([True, False, False], [1, 2, 2])
    assert acc["mean_over_classes"] == pytest.approx(0.5) and acc["overall"] == pytest.approx(1 / 3)


def test_class_discrimination_by_hand():
    m = np.zeros((1, 10, 10))
    m[0, 0:2, 0:2] = 1.0  # 4 units in own box
    m[0, 8, 8] = 4.0  # 4 units in the other box, the peak
    m[0, 5, 5] = 2.0  # 2 units elsewhere
    d = pg.class_discrimination(m, np.array([[0, 0, 3, 3]]), np.array([[7, 7, 10, 10]]))
    np.testing.assert_allclose(d["own_mass"], [0.4])
    np.testing.assert_allclose(d["other_mass"], [0.4])
    np.testing.assert_allclose(d["discrimination"], [0.5])
    assert d["peak_in_other"][0] and not d["peak_in_own"][0]


def test_centre_baseline_and_scaling():
    maps = pg.centre_maps(2, (9, 9))
    assert pg.peaks(maps)[0].tolist() == [4, 4] and pg.peaks(maps)[1].tolist() == [4, 4]
    assert pg.scaled_tolerance(96) == pytest.approx(15 * 96 / 224)
    with pytest.raises(ValueError, match="one box set per map"):
        pg.pointing_hits(np.zeros((2, 5, 5)), [np.zeros((1, 4))])


def plateau_map():
    m = np.zeros((1, 8, 8))
    m[0, 1:3, 1:3] = 1.0  # four tied maxima: (1, 1), (1, 2), (2, 1), (2, 2)
    m[0, 6, 6] = 0.5
    return m


def test_tie_rules_on_a_plateau_by_hand():
    m, box = plateau_map(), np.array([[2, 2, 4, 4]])  # rows 2..3, cols 2..3: holds (2, 2) only
    assert pg.tie_counts(m).tolist() == [4]
    rows, cols = pg.peaks(m, ties="first")
    assert (rows[0], cols[0]) == (1, 1)  # row-major: the top-left pixel of the plateau
    rows, cols = pg.peaks(m, ties="centroid")
    assert (rows[0], cols[0]) == (1.5, 1.5)  # the plateau's centre, between four pixels
    # centroid: 0.5 px above and left of the box's corner pixel (2, 2), sqrt(0.5) away;
    # first: (1, 1), sqrt(2) away
    for tol, centroid, first in ((0.0, False, False), (0.75, True, False), (1.5, True, True)):
        assert pg.pointing_hits(m, box, tolerance=tol).tolist() == [centroid]
        assert pg.pointing_hits(m, box, tolerance=tol, ties="first").tolist() == [first]


def test_random_ties_pick_a_tied_pixel_reproducibly():
    m, box = plateau_map(), np.array([[2, 2, 4, 4]])
    picks = {tuple(float(v[0]) for v in pg.peaks(m, ties="random", seed=s)) for s in range(40)}
    assert picks == {(1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (2.0, 2.0)}
    a = pg.pointing_hits(np.repeat(m, 400, 0), np.repeat(box, 400, 0), tolerance=0, ties="random",
                         seed=7)  # fmt: skip
    b = pg.pointing_hits(np.repeat(m, 400, 0), np.repeat(box, 400, 0), tolerance=0, ties="random",
                         seed=7)  # fmt: skip
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 0.25) < 0.07  # one of four tied pixels lies in the box
    with pytest.raises(ValueError, match="seed"):
        pg.peaks(m, ties="random")
    with pytest.raises(ValueError, match="tie rule"):
        pg.peaks(m, ties="last")


def test_scattered_maxima_centroid_lands_between_them():
    m = np.zeros((1, 10, 10))
    m[0, 0, 0] = m[0, 0, 9] = 1.0  # two maxima in opposite corners of the top row
    box = np.array([[0, 4, 2, 6]])  # the top row's middle, where neither maximum is
    assert pg.peaks(m)[1].tolist() == [4.5]
    assert pg.pointing_hits(m, box, tolerance=0).tolist() == [True]
    assert pg.pointing_hits(m, box, tolerance=0, ties="first").tolist() == [False]
    # a unique maximum: every rule agrees
    m[0, 0, 9] = 0.9
    for rule in pg.TIES:
        assert pg.pointing_hits(m, box, tolerance=0, ties=rule, seed=0).tolist() == [False]


def test_energy_in_boxes_by_hand():
    m = np.ones((3, 4, 4))
    m[0, :2, :2] = 3.0  # floor 1, box 3: min-max -> box 1, rest 0
    m[1] = -1.0
    m[1, 0, 0] = 1.0
    m[1, 3, 3] = 1.0  # two peaks of 1 on a floor of -1: one in the box
    m[2] = 5.0  # constant: no shape, energy 0
    box = np.array([[0, 0, 2, 2]] * 3)
    np.testing.assert_allclose(pg.energy_in_boxes(m, box), [1.0, 0.5, 0.0])
    # without the normalisation the floor counts: 12 of 24 units inside; negatives clipped
    np.testing.assert_allclose(pg.mass_in_boxes(m, box), [0.5, 0.5, 0.25])
    # several boxes: their union; empty padding boxes are ignored
    two = np.array([[[0, 0, 2, 2], [0, 0, 0, 0]], [[0, 0, 1, 1], [3, 3, 4, 4]],
                    [[0, 0, 4, 4], [0, 0, 0, 0]]])  # fmt: skip
    np.testing.assert_allclose(pg.energy_in_boxes(m, two), [1.0, 1.0, 0.0])


def test_class_discrimination_with_tied_peaks():
    m = np.zeros((1, 10, 10))
    m[0, 1, 1] = m[0, 8, 8] = 1.0  # tied peaks, one in each class's box
    own, other = np.array([[[0, 0, 3, 3]]]), np.array([[[7, 7, 10, 10]]])
    d = pg.class_discrimination(m, own, other, ties="first")
    assert d["peak_in_own"].tolist() == [True] and d["peak_in_other"].tolist() == [False]
    d = pg.class_discrimination(m, own, other)  # centroid (4.5, 4.5): in neither box
    assert d["peak_in_own"].tolist() == [False] and d["peak_in_other"].tolist() == [False]
    np.testing.assert_allclose(d["discrimination"], [0.5])
    np.testing.assert_allclose(d["own_mass"], [0.5])
