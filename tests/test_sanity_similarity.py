"""Sanity-check similarity metrics against scipy and scikit-image on the same arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import skimage.feature
import skimage.metrics

from jaxsal.sanity import (
    hog,
    hog_box_mask,
    hog_cells,
    hog_spearman,
    masked_spearman,
    masked_ssim,
    similarities,
    spearman_abs,
    spearman_signed,
    ssim_abs,
)


def maps(seed, n=3, size=64, channels=3):
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(rng.normal(size=(n, size, size, channels)), axis=1)
    return smooth + 0.5 * rng.normal(size=smooth.shape)


def abs_map_np(h, q=99.0):  # SPEC 3: sum_c |.|, clipped at the 99th percentile, in [0, 1]
    a = np.abs(h).sum(-1)
    return np.stack([np.clip(m / np.percentile(m, q), 0, 1) for m in a])


def signed_map_np(h, q=99.0):  # SPEC 3: sum_c, over the 99th percentile of |.|, in [-1, 1]
    s = h.sum(-1)
    return np.stack([np.clip(m / np.percentile(np.abs(m), q), -1, 1) for m in s])


def test_spearman_abs_and_signed_match_scipy():
    a, b = maps(0), maps(1)
    b[1] = a[1] + 0.1 * b[1]  # one correlated pair
    got_abs = np.asarray(spearman_abs(jnp.asarray(a), jnp.asarray(b)))
    got_signed = np.asarray(spearman_signed(jnp.asarray(a), jnp.asarray(b)))
    ma, mb = abs_map_np(a), abs_map_np(b)
    sa, sb = signed_map_np(a), signed_map_np(b)
    for i in range(len(a)):
        want = scipy.stats.spearmanr(ma[i].ravel(), mb[i].ravel()).statistic
        np.testing.assert_allclose(got_abs[i], want, atol=1e-10)
        want = scipy.stats.spearmanr(sa[i].ravel(), sb[i].ravel()).statistic
        np.testing.assert_allclose(got_signed[i], want, atol=1e-10)
    assert got_abs[1] > 0.9 and abs(got_abs[0]) < 0.9
    assert (ma == 1).sum() > len(a)  # the clipping made ties, ranked as scipy ranks them


def test_ssim_matches_skimage_on_absolute_maps():
    a, b = maps(2, size=40), maps(3, size=40)
    b[0] = a[0] + 0.3 * b[0]
    got = np.asarray(ssim_abs(jnp.asarray(a), jnp.asarray(b)))
    ma, mb = abs_map_np(a), abs_map_np(b)
    for i in range(len(a)):
        want = skimage.metrics.structural_similarity(
            ma[i], mb[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0,
        )  # fmt: skip
        np.testing.assert_allclose(got[i], want, atol=1e-8)


@pytest.mark.parametrize("shape", [(96, 96), (100, 90)])
def test_hog_matches_skimage(shape):
    rng = np.random.default_rng(4)
    images = np.stack([rng.random(shape), np.cumsum(rng.random(shape), 0) / shape[0],
                       (rng.random(shape) > 0.9).astype(float)])  # fmt: skip
    got = hog(images)
    for i, image in enumerate(images):
        want = skimage.feature.hog(image, pixels_per_cell=(16, 16), cells_per_block=(3, 3))
        assert got[i].shape == want.shape
        # skimage accumulates the cell histograms in float32
        np.testing.assert_allclose(got[i], want, atol=1e-6)


def test_hog_spearman_matches_scipy_on_skimage_descriptors():
    a, b = maps(5, n=2, size=64, channels=1), maps(6, n=2, size=64, channels=1)
    got = np.asarray(hog_spearman(jnp.asarray(a), jnp.asarray(b)))
    ma, mb = abs_map_np(a), abs_map_np(b)
    for i in range(2):
        ha = skimage.feature.hog(ma[i], pixels_per_cell=(16, 16))
        hb = skimage.feature.hog(mb[i], pixels_per_cell=(16, 16))
        want = scipy.stats.spearmanr(ha, hb).statistic
        np.testing.assert_allclose(got[i], want, atol=1e-4)  # float32 ties in skimage


def test_similarities_rejects_bad_input():
    a = jnp.zeros((1, 32, 32, 1))
    with pytest.raises(ValueError, match="same shape"):
        similarities(a, jnp.zeros((1, 16, 16, 1)))
    with pytest.raises(ValueError, match="unknown metric"):
        similarities(a, a, metrics=("pearson",))
    with pytest.raises(ValueError, match="cells"):
        hog(np.zeros((1, 32, 32)))


def test_masked_spearman_hand_computed():
    a = np.array([[3, 1, 2, 9], [1, 1, 2, 0], [5, 6, 7, 8], [4, 1, 3, 2]], np.float64)
    b = np.array([[1, 2, 3, -5], [1, 2, 3, 0], [1, 2, 3, 4], [1, 2, 3, 4]], np.float64)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0], [1, 1, 1, 1]], bool)
    fn = jax.jit(masked_spearman)
    got = np.asarray(fn(jnp.asarray(a.reshape(4, 2, 2)), jnp.asarray(b.reshape(4, 2, 2)),
                        jnp.asarray(mask.reshape(4, 2, 2))))  # fmt: skip
    # ranks (3, 1, 2) vs (1, 2, 3): sum d^2 = 6, rho = 1 - 6 * 6 / (3 * 8)
    np.testing.assert_allclose(got[0], -0.5, atol=1e-12)
    # ties: ranks (1.5, 1.5, 3) vs (1, 2, 3), centred (-.5, -.5, 1) and (-1, 0, 1): 1.5 / sqrt(3)
    np.testing.assert_allclose(got[1], 1.5 / np.sqrt(1.5 * 2), atol=1e-12)
    assert np.isnan(got[2])  # one selected entry: no ranks
    np.testing.assert_allclose(got[3], scipy.stats.spearmanr(a[3], b[3]).statistic, atol=1e-12)


def box_maps():
    """4x4 maps, 2 channels, the box (1, 1, 3, 3) holding [[1, 2], [3, 4]] in `a`."""
    a = np.full((1, 4, 4), 0.5)
    a[0, 0, 0] = 100.0  # the maximum, outside the box, alone above the 99th percentile
    a[0, 1:3, 1:3] = [[1, 2], [3, 4]]
    b = np.full((1, 4, 4), 0.25)
    b[0, 3, 3] = 50.0
    b[0, 1:3, 1:3] = [[-2, 1], [3, 4]]
    split = lambda m: np.stack([m / 2, m / 2], -1)  # noqa: E731 - channels sum to the map
    return jnp.asarray(split(a)), jnp.asarray(split(b)), np.array([[1, 1, 3, 3]])


def test_box_spearman_hand_computed():
    a, b, boxes = box_maps()
    # signed ranks in the box: (1, 2, 3, 4) vs (1, 2, 3, 4)
    np.testing.assert_allclose(spearman_signed(a, b, boxes=boxes), [1.0], atol=1e-12)
    # absolute: (1, 2, 3, 4) vs |b| = (2, 1, 3, 4): sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15)
    np.testing.assert_allclose(spearman_abs(a, b, boxes=boxes), [0.8], atol=1e-12)
    whole = np.array([[0, 0, 4, 4]])
    np.testing.assert_allclose(spearman_abs(a, b, boxes=whole), spearman_abs(a, b), atol=1e-12)
    out = similarities(a, b, metrics=("spearman_abs", "spearman_signed"), boxes=boxes)
    np.testing.assert_allclose(out["spearman_abs"], [0.8], atol=1e-12)
    with pytest.raises(ValueError, match="boxes must have shape"):
        similarities(a, b, boxes=np.zeros((2, 4)))


def test_masked_ssim_hand_computed_and_skimage():
    a, b = jnp.full((2, 12, 12), 0.5), jnp.full((2, 12, 12), 0.25)
    mask = np.zeros((2, 12, 12), bool)
    mask[0, 3:6, 2:9] = True  # second image: empty box
    got = np.asarray(jax.jit(masked_ssim)(a, b, jnp.asarray(mask)))
    c1 = 0.01**2  # zero variances: SSIM = (2 mu_a mu_b + c1) / (mu_a^2 + mu_b^2 + c1)
    np.testing.assert_allclose(got[0], (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1), atol=1e-12)
    assert np.isnan(got[1])
    x, y = maps(7, n=2, size=24, channels=1), maps(8, n=2, size=24, channels=1)
    boxes = np.array([[0, 2, 9, 20], [10, 10, 24, 24]])  # touching the border on purpose
    got = np.asarray(ssim_abs(jnp.asarray(x), jnp.asarray(y), boxes=boxes))
    mx, my = abs_map_np(x), abs_map_np(y)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        _, full = skimage.metrics.structural_similarity(
            mx[i], my[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0, full=True,
        )  # fmt: skip
        np.testing.assert_allclose(got[i], full[y0:y1, x0:x1].mean(), atol=1e-8)


def test_hog_cells_and_box_entries_hand_listed():
    # 6x6 pixels, 2-pixel cells: 3x3 cells, 2x2-cell blocks, one orientation: 16 entries
    cells = hog_cells((6, 6), pixels_per_cell=2, cells_per_block=2, orientations=1)
    want = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 1), (0, 2), (1, 1), (1, 2),
            (1, 0), (1, 1), (2, 0), (2, 1), (1, 1), (1, 2), (2, 1), (2, 2)]  # fmt: skip
    assert [tuple(c) for c in cells] == want
    kw = dict(pixels_per_cell=2, cells_per_block=2, orientations=1)
    boxes = np.array([[0, 0, 2, 2], [2, 2, 4, 4], [1, 1, 3, 3], [4, 5, 5, 6]])
    got = hog_box_mask(boxes, (6, 6), **kw)
    assert np.flatnonzero(got[0]).tolist() == [0]  # cell (0, 0) only
    assert np.flatnonzero(got[1]).tolist() == [3, 6, 9, 12]  # cell (1, 1) in each block
    assert set(np.flatnonzero(got[2])) == {i for i, c in enumerate(want) if max(c) <= 1}
    assert np.flatnonzero(got[3]).tolist() == [15]  # cell (2, 2)


def test_box_hog_spearman_matches_scipy_on_selected_skimage_entries():
    a, b = maps(9, n=2, size=64, channels=1), maps(10, n=2, size=64, channels=1)
    boxes = np.array([[20, 10, 40, 30], [0, 40, 15, 64]])
    got = np.asarray(hog_spearman(jnp.asarray(a), jnp.asarray(b), boxes=boxes))
    keep = hog_box_mask(boxes, (64, 64))
    ma, mb = abs_map_np(a), abs_map_np(b)
    for i in range(2):
        ha = skimage.feature.hog(ma[i], pixels_per_cell=(16, 16))[keep[i]]
        hb = skimage.feature.hog(mb[i], pixels_per_cell=(16, 16))[keep[i]]
        want = scipy.stats.spearmanr(ha, hb).statistic
        np.testing.assert_allclose(got[i], want, atol=1e-4)  # float32 ties in skimage
