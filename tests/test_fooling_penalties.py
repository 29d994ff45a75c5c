"""Fooling penalties (Heo et al. 2019) against values computed by hand in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import fooling

EPS = 1e-8


def np_normalize(h):
    h = h - h.min(axis=(1, 2, 3), keepdims=True)
    return h / (h.max(axis=(1, 2, 3), keepdims=True) + EPS)


def np_center(h):
    """Centre of mass by explicit loops over pixels (1-based coordinates)."""
    h = np_normalize(h)
    out = []
    for img in h[..., 0]:
        rows = cols = 0.0
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                rows += (i + 1) * img[i, j]
                cols += (j + 1) * img[i, j]
        total = img.sum() + EPS
        out.append((rows / total, cols / total))
    return np.array(out)


def one_hot(n_h, n_w, *points):
    h = np.zeros((len(points), n_h, n_w, 1))
    for b, (i, j) in enumerate(points):
        h[b, i, j, 0] = 1.0
    return h


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    return {s: rng.random((3, s, s, 1)) for s in (7, 14)}


def test_location_mask_frame():
    m7 = fooling.location_mask(7, 7)  # k = 1
    assert m7.sum() == 24 and (m7[1:6, 1:6] == 0).all() and m7[0].all() and m7[:, -1].all()
    m14 = fooling.location_mask(14, 14)  # k = 2
    assert m14.sum() == 196 - 100 and (m14[2:12, 2:12] == 0).all() and (m14[:2] == 1).all()
    lrp = fooling.location_mask(14, 14, centre=-1.0)
    assert (lrp[2:12, 2:12] == -1).all() and lrp.sum() == 96 - 100
    assert fooling.location_mask(10, 12, border=3).sum() == 120 - 4 * 6


@pytest.mark.parametrize(
    "fill, expected",
    [(0.0, 24 / 49), (1.0, 25 / 49), (0.5, 0.25)],  # zeros miss the 24 frame pixels, ...
)
def test_location_penalty_constant_maps(fill, expected):
    h = jnp.full((2, 7, 7, 1), fill)
    np.testing.assert_allclose(jax.jit(fooling.location_penalty)(h), expected, rtol=1e-12)


def test_location_penalty_values(maps):
    assert float(fooling.location_penalty(fooling.location_mask(7, 7)[None, ..., None])) == 0.0
    np.testing.assert_allclose(fooling.location_penalty(jnp.zeros((1, 14, 14, 1))), 96 / 196)
    for s, h in maps.items():
        k = s // 7
        m = np.ones((s, s))
        m[k : s - k, k : s - k] = 0
        per_image = ((m[None] - h[..., 0]) ** 2).mean(axis=(1, 2))
        got = fooling.location_penalty(h, reduction="none")
        np.testing.assert_allclose(got, per_image, rtol=1e-12)
        np.testing.assert_allclose(fooling.location_penalty(h), per_image.mean(), rtol=1e-12)


def test_location_penalty_input_lrp(maps):
    h = maps[14] - 0.3  # signed, like input-level LRP
    m = -np.ones((14, 14))
    m[:2], m[-2:], m[:, :2], m[:, -2:] = 1, 1, 1, 1
    expected = ((m[None] - h[..., 0] / h.max()) ** 2).mean()
    got = jax.jit(lambda a: fooling.location_penalty(a, input_lrp=True))(h)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_topk_penalty_one_hot():
    h_orig = np.arange(49.0).reshape(1, 7, 7, 1)  # k = 4: flat indices 45..48 are on top
    inside = one_hot(7, 7, (6, 4))  # flat index 46
    outside = one_hot(7, 7, (3, 3))
    expected = (1 / (1 + EPS)) ** 2 / 4
    np.testing.assert_allclose(fooling.topk_penalty(inside, h_orig), expected, rtol=1e-12)
    assert float(fooling.topk_penalty(outside, h_orig)) == 0.0
    # A flat original map: ties go to the lowest flat indices 0..3.
    flat = np.ones((1, 7, 7, 1))
    np.testing.assert_allclose(fooling.topk_penalty(one_hot(7, 7, (0, 3)), flat), expected)
    assert float(fooling.topk_penalty(one_hot(7, 7, (0, 4)), flat)) == 0.0


def test_topk_penalty_values(maps):
    rng = np.random.default_rng(1)
    for s, h in maps.items():
        h_orig = rng.random(h.shape)
        k = s * s // 10
        top = np.argsort(-h_orig.reshape(3, -1), axis=1)[:, :k]
        hn = np_normalize(h).reshape(3, -1)
        per_image = np.array([(hn[i, top[i]] ** 2).mean() for i in range(3)])
        got = jax.jit(fooling.topk_penalty)(h, h_orig)
        np.testing.assert_allclose(got, per_image.mean(), rtol=1e-12)
        got = fooling.topk_penalty(h, h_orig, reduction="none")
        np.testing.assert_allclose(got, per_image, rtol=1e-12)
    top30 = np.argsort(-h_orig.reshape(3, -1), axis=1)[:, :58]  # 30% of 196
    expected = np.mean([(hn[i, top30[i]] ** 2).mean() for i in range(3)])
    np.testing.assert_allclose(fooling.topk_penalty(h, h_orig, fraction=0.3), expected)


def test_center_of_mass_one_hot():
    h = one_hot(5, 7, (0, 0), (2, 4), (4, 6))
    expected = np.array([[1, 1], [3, 5], [5, 7]], float)
    np.testing.assert_allclose(jax.jit(fooling.center_of_mass)(h), expected, rtol=1e-7)
    two = one_hot(5, 7, (0, 0)) + one_hot(5, 7, (2, 4))  # equal masses at (1,1) and (3,5)
    np.testing.assert_allclose(fooling.center_of_mass(two), [[2.0, 3.0]], rtol=1e-7)


def test_center_of_mass_values(maps):
    for h in maps.values():
        np.testing.assert_allclose(fooling.center_of_mass(h), np_center(h), rtol=1e-12)
    rect = np.random.default_rng(2).random((2, 6, 9, 1))
    np.testing.assert_allclose(fooling.center_of_mass(rect), np_center(rect), rtol=1e-12)


def test_center_mass_penalty(maps):
    h, h_orig = one_hot(7, 7, (1, 1)), one_hot(7, 7, (4, 5))
    np.testing.assert_allclose(fooling.center_mass_penalty(h, h_orig), -7.0, rtol=1e-7)
    a, b = maps[14], maps[14][::-1]
    d = np_center(a) - np_center(b)
    per_image = -np.abs(d).sum(axis=1)
    np.testing.assert_allclose(jax.jit(fooling.center_mass_penalty)(a, b), per_image.mean())
    np.testing.assert_allclose(fooling.center_mass_penalty(a, b, reduction="none"), per_image)


def test_active_penalty(maps):
    rng = np.random.default_rng(3)
    h1, h2, o1, o2 = (rng.random((2, 7, 7, 1)) for _ in range(4))
    expected = 0.5 * (((h1 - o2) ** 2).mean() + ((h2 - o1) ** 2).mean())
    np.testing.assert_allclose(jax.jit(fooling.active_penalty)(h1, h2, o1, o2), expected)
    per_image = 0.5 * (
        ((h1 - o2) ** 2).mean(axis=(1, 2, 3)) + ((h2 - o1) ** 2).mean(axis=(1, 2, 3))
    )
    got = fooling.active_penalty(h1, h2, o1, o2, reduction="none")
    np.testing.assert_allclose(got, per_image)
    assert float(fooling.active_penalty(o2, o1, o1, o2)) == 0.0  # a perfect swap


def test_gradients_finite_and_only_through_h(maps):
    h, h_orig = jnp.asarray(maps[14]), jnp.asarray(maps[14][::-1])
    two = {
        "topk": fooling.topk_penalty,
        "center_mass": fooling.center_mass_penalty,
        "active": lambda a, b: fooling.active_penalty(a, a**2, b, b**2),
    }
    for name, fn in two.items():
        g, g_orig = jax.jit(jax.grad(fn, argnums=(0, 1)))(h, h_orig)
        assert bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 0, name
        assert float(jnp.abs(g_orig).max()) == 0.0, name  # the original model is frozen
    for kw in ({}, {"input_lrp": True}):
        g = jax.grad(lambda a, kw=kw: fooling.location_penalty(a, **kw))(h)
        assert bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 0
    # dL/dh of the Location penalty is 2 (h - m) / (N H W), by hand.
    m = fooling.location_mask(14, 14)[None, ..., None]
    g = jax.grad(fooling.location_penalty)(h)
    np.testing.assert_allclose(g, 2 * (maps[14] - m) / maps[14].size, rtol=1e-12)


def test_float32_stays_float32(maps):
    h = jnp.asarray(maps[7], jnp.float32)
    for value in (
        fooling.location_penalty(h),
        fooling.topk_penalty(h, h),
        fooling.center_mass_penalty(h, h),
        fooling.active_penalty(h, h, h, h),
    ):
        assert value.dtype == jnp.float32


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="reduce_channels"):
        fooling.location_penalty(jnp.zeros((1, 7, 7, 3)))
    with pytest.raises(ValueError, match=r"h\[\.\.\., None\]"):
        fooling.location_penalty(jnp.zeros((1, 7, 7)))
    with pytest.raises(ValueError, match="same shape"):
        fooling.topk_penalty(jnp.zeros((1, 7, 7, 1)), jnp.zeros((1, 14, 14, 1)))
    with pytest.raises(ValueError, match="border="):
        fooling.location_mask(6, 6)
    with pytest.raises(ValueError, match="selects no pixel"):
        fooling.topk_penalty(jnp.zeros((1, 3, 3, 1)), jnp.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="reduction"):
        fooling.center_mass_penalty(
            jnp.zeros((1, 7, 7, 1)), jnp.zeros((1, 7, 7, 1)), reduction="sum"
        )
