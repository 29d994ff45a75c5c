"""VOC07 through tfds on mock data, and an end-to-end pointing-game smoke run."""

import functools

import jax
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from experiments.pointing import _as_maps, voc_pointing  # noqa: E402
from jaxsal import explainers  # noqa: E402
from jaxsal.data import voc  # noqa: E402
from jaxsal.models.small_cnn import SmallCNN  # noqa: E402
from jaxsal.params import init_module  # noqa: E402


@pytest.fixture(scope="module")
def mock_examples():
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        src = voc.source("test")
        assert len(src) == 2
        return list(voc.examples(src, size=72))


def test_examples_are_normalised_images_with_pixel_boxes(mock_examples):
    for ex in mock_examples:
        assert ex.image.shape == (72, 72, 3) and ex.image.dtype == np.float32
        assert len(ex.boxes) == len(ex.labels) == len(ex.difficult) > 0
        b = ex.boxes
        assert (b[:, 0] < b[:, 2]).all() and (b[:, 1] < b[:, 3]).all()
        assert b.min() >= 0 and b[:, 2:].max() <= 72
        assert set(ex.classes()) <= set(range(20))


def test_pixel_boxes_by_hand():
    got = voc.pixel_boxes(np.array([[0.1, 0.2, 0.5, 0.75], [0.9, 0.6, 0.3, 0.1]]), (10, 20))
    np.testing.assert_array_equal(got, [[1, 4, 5, 15], [3, 2, 9, 12]])


def test_end_to_end_pointing_on_mock_voc(mock_examples):
    # a tiny 3-channel, 20-class CNN and one compiled explainer keep this smoke run short
    module = SmallCNN(num_classes=20, in_channels=3, widths=(8, "M", 16))
    params = init_module(module, jax.random.key(0))

    table = {
        "dssr_plus": _as_maps(functools.partial(explainers.dssr_plus, steps=2, max_pool_size=5,
                                                max_pool_pad=2, avg_pool_size=7)),
    }  # fmt: skip
    out = voc_pointing(params, mock_examples, table, tolerance=6.0, key=jax.random.key(1))
    n = sum(len(ex.classes()) for ex in mock_examples)
    assert set(out) == {"dssr_plus", "centre"}
    for r in out.values():
        assert r["n"] == n and 0.0 <= r["overall"] <= 1.0
