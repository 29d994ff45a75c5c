"""`jaxsal.metrics.ssim` against skimage's Gaussian-window SSIM (Wang et al. 2004).

The reference is ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=L)``, run through `jax.jit`
in float64 on images with structure, noise and a non-unit value range.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from jaxsal.metrics import gaussian_window, ssim


def reference(a, b, data_range, channel_axis=None):
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        channel_axis=channel_axis,
    )


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:23, 0:31]
    a = np.exp(-((yy - 10.0) ** 2 + (xx - 12.0) ** 2) / 40.0) + 0.1 * rng.normal(size=yy.shape)
    b = 0.7 * a + 0.3 * rng.uniform(size=yy.shape)
    return a, b


@pytest.mark.parametrize("data_range", [1.0, 2.5])
def test_2d_matches_skimage(pair, data_range):
    a, b = pair
    got = jax.jit(lambda x, y: ssim(x, y, data_range=data_range))(a, b)
    np.testing.assert_allclose(float(got), reference(a, b, data_range), rtol=0, atol=1e-12)


def test_batch_of_maps_matches_skimage_per_image(pair):
    a, b = pair
    rng = np.random.default_rng(1)
    x = np.stack([a, b, rng.uniform(size=a.shape)])[..., None]  # (3, H, W, 1)
    y = np.stack([b, a, rng.uniform(size=a.shape)])[..., None]
    got = np.asarray(jax.jit(ssim)(x, y))
    want = [reference(x[i, ..., 0], y[i, ..., 0], 1.0) for i in range(3)]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_channels_average_like_skimage(pair):
    a, b = pair
    x = np.stack([a, b], axis=-1)
    y = np.stack([b, a**2], axis=-1)
    got = float(ssim(x, y, data_range=3.0))
    np.testing.assert_allclose(got, reference(x, y, 3.0, channel_axis=-1), rtol=0, atol=1e-12)


def test_identity_and_window():
    x = jnp.linspace(0.0, 1.0, 15 * 15).reshape(15, 15)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-12)
    w = gaussian_window()
    assert w.shape == (11,) and w.sum() == pytest.approx(1.0)


def test_gradient_is_finite(pair):
    a, b = pair
    g = jax.grad(lambda x: ssim(x, jnp.asarray(b)))(jnp.asarray(a))
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(np.zeros((12, 12)), np.zeros((12, 13)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        ssim(np.zeros(12), np.zeros(12))
