"""The pointing game and class discrimination on hand-made maps and boxes."""

import numpy as np
import pytest

from experiments.saliency_grid import pointing_hits as grid_pointing_hits
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


def test_agrees_with_the_saliency_grid_implementation():
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(30, 24, 24))
    y0, x0 = rng.integers(0, 16, size=(2, 30))
    boxes = np.stack([y0, x0, y0 + 6, x0 + 5], axis=1)
    for tol in (0.0, 3.0):
        np.testing.assert_array_equal(pg.pointing_hits(maps, boxes, tolerance=tol),
                                      grid_pointing_hits(maps, boxes, tolerance=tol))  # fmt: skip


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
