"""Post-processing against numpy re-implementations of SPEC's words, and torch's interpolate.

Each function runs through `jax.jit` on a batch whose images have different
scales and signs, so a normalisation that is not per sample shows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch_ref import to_nchw, to_nhwc

from jaxsal import postprocess as pp

EPS = 1e-8


@pytest.fixture(scope="module")
def maps():
    """Three signed NHWC maps with 4 channels at different scales and offsets."""
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 9, 11, 4))
    return h * np.array([1.0, 30.0, 1e-3]).reshape(3, 1, 1, 1) + np.array(
        [0.0, 5.0, -0.002]
    ).reshape(3, 1, 1, 1)


def per_sample(fn, h):
    return np.stack([fn(a) for a in h])


@pytest.mark.parametrize(
    "mode,reference",
    [
        ("sum", lambda h: h.sum(-1, keepdims=True)),
        ("abs_sum", lambda h: np.abs(h).sum(-1, keepdims=True)),
        ("max_abs", lambda h: np.abs(h).max(-1, keepdims=True)),
        ("mean", lambda h: h.mean(-1, keepdims=True)),
    ],
)
def test_reduce_channels(maps, mode, reference):
    got = jax.jit(lambda h: pp.reduce_channels(h, mode))(maps)
    np.testing.assert_allclose(got, reference(maps), rtol=1e-12)


def test_reduce_channels_unknown_mode(maps):
    with pytest.raises(ValueError, match=r'unknown channel reduction "l2".*sum, abs_sum'):
        pp.reduce_channels(maps, "l2")


def np_normalize(a):
    """SPEC 1: subtract the min, then divide by the (new) max + 1e-8."""
    a = a - a.min()
    return a / (a.max() + EPS)


def np_minmax(a):
    return (a - a.min()) / (a.max() - a.min() + EPS)


def test_normalize(maps):
    got = jax.jit(pp.normalize)(maps)
    np.testing.assert_allclose(got, per_sample(np_normalize, maps), rtol=1e-12)
    assert got.min() == 0.0 and np.all(got.max(axis=(1, 2, 3)) < 1.0)


def test_gradcam_heatmap(maps):
    """relu(cam) / (max + 1e-8), no min subtraction."""
    cam = maps.sum(-1, keepdims=True)

    def ref(a):
        r = np.maximum(a, 0)
        return r / (r.max() + EPS)

    got = jax.jit(pp.gradcam_heatmap)(cam)
    np.testing.assert_allclose(got, per_sample(ref, cam), rtol=1e-12)


def test_lrp_t_heatmap(maps):
    """Sum over channels, relu, per-sample min-max."""

    def ref(a):
        return np_minmax(np.maximum(a.sum(-1, keepdims=True), 0))

    got = jax.jit(pp.lrp_t_heatmap)(maps)
    np.testing.assert_allclose(got, per_sample(ref, maps), rtol=1e-10, atol=1e-12)


def test_simple_grad_t_heatmap(maps):
    """sum_c |g| * 2, relu, per-sample min-max."""

    def ref(a):
        return np_minmax(np.maximum(2.0 * np.abs(a).sum(-1, keepdims=True), 0))

    got = jax.jit(pp.simple_grad_t_heatmap)(maps)
    np.testing.assert_allclose(got, per_sample(ref, maps), rtol=1e-10, atol=1e-12)


def test_simple_grad_heatmap(maps):
    """|g| / sum |g| (channels summed first), so each map sums to 1."""

    def ref(a):
        s = np.abs(a).sum(-1, keepdims=True)
        return s / s.sum()

    got = jax.jit(pp.simple_grad_heatmap)(maps)
    # The library's 1e-8 guard in the denominator is invisible at these totals (>= 0.1).
    np.testing.assert_allclose(got, per_sample(ref, maps), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got).sum(axis=(1, 2, 3)), 1.0, rtol=1e-6)


@pytest.mark.parametrize("q", [99.0, 90.0])
def test_absolute_map(maps, q):
    """sum_c |h|, clipped at the q-th percentile, scaled to [0, 1]."""

    def ref(a):
        s = np.abs(a).sum(-1, keepdims=True)
        top = np.percentile(s, q)
        return np.clip(s, 0, top) / top

    got = jax.jit(lambda h: pp.absolute_map(h, q))(maps)
    np.testing.assert_allclose(got, per_sample(ref, maps), rtol=1e-6)


@pytest.mark.parametrize("q", [99.0, 90.0])
def test_signed_map(maps, q):
    """sum_c h divided by the q-th percentile of its magnitude, clipped to [-1, 1]."""

    def ref(a):
        s = a.sum(-1, keepdims=True)
        return np.clip(s / np.percentile(np.abs(s), q), -1, 1)

    got = jax.jit(lambda h: pp.signed_map(h, q))(maps)
    np.testing.assert_allclose(got, per_sample(ref, maps), rtol=1e-6)


def test_degenerate_maps_stay_finite():
    """A constant or all-negative map gives zeros, not NaN."""
    const = jnp.full((2, 4, 4, 1), 3.0)
    neg = -jnp.ones((2, 4, 4, 1))
    np.testing.assert_array_equal(pp.normalize(const), 0.0)
    np.testing.assert_array_equal(pp.gradcam_heatmap(neg), 0.0)
    np.testing.assert_array_equal(pp.lrp_t_heatmap(neg), 0.0)
    np.testing.assert_array_equal(pp.simple_grad_heatmap(jnp.zeros((1, 3, 3, 2))), 0.0)


@pytest.mark.parametrize(
    "shape,size",
    [((7, 7), (224, 224)), ((9, 9), (72, 72)), ((5, 3), (13, 11)), ((14, 14), (6, 5))],
)
@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_upsample_matches_torch(shape, size, method):
    """torch's interpolate: mode "nearest"; "bilinear" with align_corners=False."""
    h = np.random.default_rng(1).normal(size=(2, *shape, 3))
    kw = {"align_corners": False} if method == "bilinear" else {}
    ref = to_nhwc(torch.nn.functional.interpolate(to_nchw(h), size=size, mode=method, **kw))
    got = jax.jit(lambda a: pp.upsample(a, size, method=method))(h)
    assert got.shape == (2, *size, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_upsample_unknown_method():
    with pytest.raises(
        ValueError, match=r'unknown interpolation "bicubic".*"nearest" or "bilinear"'
    ):
        pp.upsample(jnp.zeros((1, 7, 7, 1)), (224, 224), method="bicubic")
