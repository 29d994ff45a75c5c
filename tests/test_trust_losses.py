"""The trustworthy loss (Halliwell & Lecue eq. 4-10) against numpy by hand.

The Grad-CAM maps come from the public, input-checked interpreters (tested
against Captum elsewhere); everything the loss adds to them (max
normalisation, means, scaling by the number of classes, R1, R2, lambda,
ablations, box maps, PWCE) is recomputed here in numpy. The second-order
gradient is checked against central finite differences in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsal
from jaxsal.metrics import box_coverage
from jaxsal.trust import TrustConfig, pixelwise_cross_entropy, terms, trust_terms

LAM = 0.7


@pytest.fixture(scope="module")
def setup():
    p = jaxsal.init("small_cnn", jax.random.key(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 32, 32, 1))
    y = np.array([1, 4, 7])
    boxes = np.array([[0, 0, 16, 16], [8, 4, 20, 30], [16, 16, 32, 32]])
    return p, x, y, boxes


def numpy_ce(logits, y):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def test_terms_by_hand():
    ce = np.array([0.05, 0.3, 0.9])
    s = np.array([0.2, 0.01, 0.5])
    got = jax.jit(lambda a, b: terms(a, b, lam=LAM))(ce, s)
    np.testing.assert_allclose(got["r1"], [0.05 * 0.8, 0.3 * 0.99, 0.9 * 0.5], atol=1e-15)
    np.testing.assert_allclose(got["r2"], [0.2 * 0.95, 0.01 * 0.7, 0.5 * 0.1], atol=1e-15)
    want = LAM * ce + (1 - LAM) * s + ce * (1 - s) + s * (1 - ce)
    np.testing.assert_allclose(got["loss"], want, atol=1e-15)
    no_r1 = terms(ce, s, lam=LAM, use_r1=False)
    np.testing.assert_allclose(no_r1["loss"], want - ce * (1 - s), atol=1e-15)
    no_r2 = terms(ce, s, lam=LAM, use_r2=False)
    np.testing.assert_allclose(no_r2["loss"], want - s * (1 - ce), atol=1e-15)


@pytest.mark.parametrize("use_r1,use_r2", [(True, True), (False, True), (True, False)])
def test_gradcam_loss_by_hand(setup, use_r1, use_r2):
    p, x, y, _ = setup
    cfg = TrustConfig(method="gradcam", layer="last_conv", lam=LAM, use_r1=use_r1, use_r2=use_r2)
    got = jax.jit(lambda p, x, y: trust_terms(p, x, y, config=cfg))(p, x, y)
    logits = np.asarray(jaxsal.logits(p, x))
    cam = np.asarray(jaxsal.gradcam(p, x, y, layer="last_conv"))[..., 0]  # (3, 4, 4)
    cam = cam / (cam.reshape(3, -1).max(1).reshape(3, 1, 1) + 1e-6)
    ce = numpy_ce(logits, y) / 10
    s = cam.mean(axis=(1, 2)) / 10
    r1 = ce * (1 - s) * use_r1
    r2 = s * (1 - ce) * use_r2
    want = LAM * ce + (1 - LAM) * s + r1 + r2
    assert (s > 0).sum() >= 2  # a random model may give one all-zero map
    for k, v in {"ce": ce, "s": s, "r1": r1, "r2": r2, "loss": want}.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-10, atol=1e-14, err_msg=k)


def test_guided_gradcam_s_by_hand(setup):
    p, x, y, _ = setup
    cfg = TrustConfig(method="guided_gradcam", layer="last_conv", lam=LAM)
    got = jax.jit(lambda p, x, y: trust_terms(p, x, y, config=cfg))(p, x, y)
    g = np.abs(np.asarray(jaxsal.guided_gradcam(p, x, y, layer="last_conv"))).sum(-1)
    g = g / (g.reshape(3, -1).max(1).reshape(3, 1, 1) + 1e-6)
    np.testing.assert_allclose(got["s"], g.mean(axis=(1, 2)) / 10, rtol=1e-10)


def test_baseline_is_plain_cross_entropy(setup):
    p, x, y, _ = setup
    got = trust_terms(p, x, y, config=TrustConfig(method=None))
    np.testing.assert_allclose(
        got["loss"], numpy_ce(np.asarray(jaxsal.logits(p, x)), y), rtol=1e-12
    )
    np.testing.assert_array_equal(got["s"], 0.0)


def test_box_coverage_by_hand():
    boxes = np.array([[1, 2, 5, 8], [0, 0, 8, 8]])  # half-open, on an 8x8 input
    got = np.asarray(box_coverage(boxes, (8, 8), (4, 4)))
    # cells of 2x2 pixels: rows 1..4 cover cell rows 0 (1 of 2), 1, 2 (1 of 2); cols 2..7 full
    row = np.array([0.5, 1.0, 0.5, 0.0]).reshape(4, 1)
    col = np.array([0.0, 1.0, 1.0, 1.0]).reshape(1, 4)
    np.testing.assert_allclose(got[0], row * col)
    np.testing.assert_allclose(got[1], np.ones((4, 4)))
    with pytest.raises(ValueError, match="multiple"):
        box_coverage(boxes, (8, 8), (3, 3))


def test_pwce_by_hand():
    g = np.array([[[1.0, 0.0], [0.5, 0.0]]])
    q = np.array([[[0.9, 0.2], [0.5, 0.0]]])
    p = np.clip(q, 1e-6, 1 - 1e-6)
    want = -(np.log(0.9) + np.log(0.8) + 0.5 * np.log(0.5) + 0.5 * np.log(0.5) + np.log(1 - 1e-6))
    np.testing.assert_allclose(pixelwise_cross_entropy(g, p), [want / 4], rtol=1e-12)


def test_ground_truth_variant_by_hand(setup):
    p, x, y, boxes = setup
    cfg = TrustConfig(method="gradcam", layer="last_conv", lam=LAM, ground_truth=True)
    got = trust_terms(p, x, y, boxes, config=cfg)
    cam = np.asarray(jaxsal.gradcam(p, x, y, layer="last_conv"))[..., 0]
    cam = np.clip(cam / (cam.reshape(3, -1).max(1).reshape(3, 1, 1) + 1e-6), 1e-6, 1 - 1e-6)
    gt = np.zeros((3, 32, 32))
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        gt[i, y0:y1, x0:x1] = 1
    gt = gt.reshape(3, 4, 8, 4, 8).mean(axis=(2, 4))
    pw = -(gt * np.log(cam) + (1 - gt) * np.log(1 - cam)).mean(axis=(1, 2)) / 10
    ce = numpy_ce(np.asarray(jaxsal.logits(p, x)), y) / 10
    want = LAM * ce + (1 - LAM) * pw + ce * (1 - pw) + pw * (1 - ce)
    np.testing.assert_allclose(got["s"], pw, rtol=1e-10)
    np.testing.assert_allclose(got["loss"], want, rtol=1e-10)
    with pytest.raises(ValueError, match="needs boxes"):
        trust_terms(p, x, y, config=cfg)


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_second_order_gradient_matches_finite_differences(setup, method):
    """d loss / d (last conv kernel) through the saliency map, in float64."""
    p, x, y, _ = setup
    cfg = TrustConfig(method=method, layer="last_conv", lam=0.0, use_r1=False, use_r2=False)

    def loss_of(k):
        q = p.replace(params={**p.params, "features": {**p.params["features"], "11": {
            **p.params["features"]["11"], "kernel": k}}})  # fmt: skip
        return trust_terms(q, x, y, config=cfg)["loss"].sum()  # S only: needs 2nd order

    k0 = p.params["features"]["11"]["kernel"]
    d = jax.random.normal(jax.random.key(1), k0.shape, k0.dtype)
    g = jax.jit(jax.grad(loss_of))(k0)
    eps = 1e-5
    fd = (loss_of(k0 + eps * d) - loss_of(k0 - eps * d)) / (2 * eps)
    assert abs(float(jnp.vdot(g, d))) > 1e-6
    np.testing.assert_allclose(float(jnp.vdot(g, d)), float(fd), rtol=1e-5)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="unknown saliency method"):
        TrustConfig(method="lrp")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TrustConfig(lam=1.5)
    assert optax is not None
