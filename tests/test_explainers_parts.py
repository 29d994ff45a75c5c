"""The explainers' building blocks against independent references (scipy, torch, numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import torch

from jaxsal import explainers as E
from jaxsal.explainers.dssr import avg_pool, max_pool
from jaxsal.explainers.extremal import area_template, smoothing_matrices
from jaxsal.explainers.occlusion import window_starts


def test_gaussian_blur_matches_scipy():
    x = np.random.default_rng(0).normal(size=(2, 20, 17, 3))
    for sigma in (0.8, 2.5):
        got = np.asarray(E.gaussian_blur(jnp.asarray(x), sigma))
        want = scipy.ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect")
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_pools_match_torch():
    m = np.random.default_rng(1).uniform(size=(15, 13))
    t = torch.tensor(m)[None, None]
    want = torch.nn.functional.max_pool2d(t, 4, stride=1, padding=2)[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(max_pool(jnp.asarray(m), 4, 2)), want, atol=1e-14)
    want = torch.nn.functional.avg_pool2d(t, 5, stride=1, padding=0)[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(avg_pool(jnp.asarray(m), 5)), want, atol=1e-14)


def test_total_variation_by_hand():
    p = np.array([[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
    # vertical |d|^3: 1, 0, 0.125 (mean over 3); horizontal: 1, 0.125, 0, 1 (mean over 4)
    want = (1 + 0 + 0.125) / 3 + (1 + 0.125 + 0 + 1) / 4
    np.testing.assert_allclose(float(E.total_variation(jnp.asarray(p), 3.0)), want)


def test_occlusion_on_a_linear_model_equals_the_numpy_loop():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(12, 10, 2))
    x = rng.normal(size=(2, 12, 10, 2))

    def linear(z):
        s = jnp.einsum("nhwc,hwc->n", z, jnp.asarray(w))
        return jnp.stack([s, -s], axis=-1)

    got = np.asarray(E.occlusion(linear, jnp.asarray(x), 0, patch=4, stride=3, scores="raw"))
    total, count = np.zeros((2, 12, 10)), np.zeros((12, 10))
    for y0 in (0, 3, 6, 8):
        for x0 in (0, 3, 6):
            drop = (x[:, y0 : y0 + 4, x0 : x0 + 4] * w[y0 : y0 + 4, x0 : x0 + 4]).sum(
                axis=(1, 2, 3)
            )
            total[:, y0 : y0 + 4, x0 : x0 + 4] += drop[:, None, None]
            count[y0 : y0 + 4, x0 : x0 + 4] += 1
    np.testing.assert_allclose(got[..., 0], total / count, rtol=1e-10)
    assert list(window_starts(12, 4, 3)) == [0, 3, 6, 8]


def test_rise_is_the_score_weighted_mask_average():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 16, 1))
    x = rng.normal(size=(1, 16, 16, 1))

    def linear(z):
        s = jnp.einsum("nhwc,hwc->n", z, jnp.asarray(w))
        return jnp.stack([s, -s], axis=-1)

    key = jax.random.key(5)
    got = np.asarray(E.rise(linear, jnp.asarray(x), 0, key=key, masks=60, batch=20, cells=4,
                            scores="raw"))[0, ..., 0]  # fmt: skip
    k_mask, _ = jax.random.split(key)
    draw = jax.jit(lambda k: E.rise_masks(k, 20, (16, 16), cells=4, dtype=jnp.float64))
    masks = np.concatenate([np.asarray(draw(k)) for k in jax.random.split(k_mask, 3)])
    scores = np.einsum("bhw,hw->b", masks * x[0, ..., 0], w[..., 0])
    np.testing.assert_allclose(got, np.einsum("b,bhw->hw", scores, masks) / (60 * 0.5), rtol=1e-9)


def test_rise_masks_are_shifted_upsampled_bernoulli_grids():
    m = np.asarray(jax.jit(E.rise_masks, static_argnums=(1, 2))(jax.random.key(0), 200, (14, 14)))
    assert m.shape == (200, 14, 14) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean() - 0.5) < 0.05
    assert len(np.unique(m[:, 0, 0].round(3))) > 3  # random shifts: not only 0 / 1 at the corner


def test_extremal_smoothing_matrices_are_torch_upsampling_then_scipy_blur():
    p = np.random.default_rng(4).uniform(size=(3, 6, 5))
    rows, cols = smoothing_matrices((6, 5), (30, 25), 2.0, jnp.float64)
    got = np.einsum("Hh,khw,Ww->kHW", np.asarray(rows), p, np.asarray(cols))
    up = torch.nn.functional.interpolate(torch.tensor(p)[:, None], size=(30, 25), mode="bilinear",
                                         align_corners=False)[:, 0].numpy()  # fmt: skip
    want = scipy.ndimage.gaussian_filter(up, sigma=(0, 2.0, 2.0), mode="reflect")
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_area_template():
    np.testing.assert_array_equal(area_template((0.25, 0.5), 4), [[0, 0, 0, 1], [0, 0, 1, 1]])


def test_references():
    x = jnp.ones((1, 8, 8, 3))
    assert float(E.references.make_reference(0.5, x, None).mean()) == 0.5
    r = E.references.make_reference("uniform", x, jax.random.key(0))
    assert r.shape == x.shape and 0 <= float(r.min()) and float(r.max()) <= 1
    np.testing.assert_allclose(np.asarray(E.references.make_reference("blur", x, None)), 1.0)
