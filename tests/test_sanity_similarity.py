"""Sanity-check similarity metrics against scipy and scikit-image on the same arrays."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import skimage.feature
import skimage.metrics

from jaxsal.sanity import hog, hog_spearman, similarities, spearman_abs, spearman_signed, ssim_abs


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
