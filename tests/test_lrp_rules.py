"""Each LRP rule against a closed-form NumPy re-implementation, on one dense and one conv layer.

The reference writes every rule as a sum over contributions `x_i w_ij` of a
dense layer; a conv layer is the same dense layer applied to image patches
(im2col), its input relevance scattered back (col2im). jaxsal's rules run
through `jax.jit` and `jax.custom_vjp` (`jaxsal.lrp.attach.attach`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal.lrp import (
    AlphaBeta,
    Epsilon,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    Flat,
    Gamma,
    LayerMapComposite,
    Norm,
    NormPlus,
    PaperComposite,
    Pass,
    WSquare,
    ZBox,
    ZPlus,
    get_composite,
    stabilize,
)
from jaxsal.lrp.attach import attach
from jaxsal.models.layers import BatchNorm, Conv, Linear, MaxPool, ReLU, avg_pool, conv2d, linear

RNG = np.random.default_rng(0)
LOW, HIGH = -1.5, 2.5


def stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def p(a):
    return np.maximum(a, 0.0)


def n(a):
    return np.minimum(a, 0.0)


# --- closed forms on a dense layer: x (N, I), w (I, O), b (O,), R (N, O) -> (N, I) -------------


def share(xs, ws, bias, R, eps, mask=None):
    """sum_j (sum_k x_k,i w_k,ij) R_j / stab(z_j), z_j = sum_k sum_i x_k,i w_k,ij + bias_j."""
    z = sum(x @ w for x, w in zip(xs, ws)) + bias
    s = R / stab(z, eps) if mask is None else np.where(mask, R / stab(z, eps), 0.0)
    return sum(x * (s @ w.T) for x, w in zip(xs, ws))


def ref_dense(rule, x, w, b, R):
    eps = getattr(rule, "stabilizer", getattr(rule, "epsilon", None))
    if isinstance(rule, Epsilon):
        return x * ((R / stab(x @ w + b, eps)) @ w.T)
    if isinstance(rule, ZPlus):
        return share([p(x), n(x)], [p(w), n(w)], p(b), R, eps)
    if isinstance(rule, AlphaBeta):
        up = share([p(x), n(x)], [p(w), n(w)], p(b), R, eps)
        down = share([p(x), n(x)], [n(w), p(w)], n(b), R, eps)
        return rule.alpha * up - rule.beta * down
    if isinstance(rule, Gamma):
        g, z = rule.gamma, x @ w + b
        wp, wn, bp, bn = w + g * p(w), w + g * n(w), b + g * p(b), b + g * n(b)
        up = share([p(x), n(x)], [wp, wn], bp, R, eps, z > 0)
        down = share([p(x), n(x)], [wn, wp], bn, R, eps, z < 0)
        return up + down
    if isinstance(rule, Flat):
        s = R / stab(np.full_like(R, x.shape[1]), eps)
        return np.broadcast_to(s.sum(1, keepdims=True), x.shape)
    if isinstance(rule, WSquare):
        return (R / stab((w**2).sum(0) + b**2, eps)) @ (w**2).T
    if isinstance(rule, ZBox):
        lo, hi = np.full_like(x, LOW), np.full_like(x, HIGH)
        z = x @ w + b - lo @ p(w) - p(b) - hi @ n(w) - n(b)
        s = R / stab(z, eps)
        return x * (s @ w.T) - lo * (s @ p(w).T) - hi * (s @ n(w).T)
    raise AssertionError(rule)


# --- conv = dense layer on patches -----------------------------------------------------------


def im2col(x, k, stride, pad):
    """(N, H, W, C) -> patches (N, Ho, Wo, k*k*C) in HWI order, and the padded shape."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (xp.shape[1] - k) // stride + 1
    wo = (xp.shape[2] - k) // stride + 1
    cols = np.stack(
        [
            xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
            for i in range(k)
            for j in range(k)
        ],
        axis=3,
    )  # (N, Ho, Wo, k*k, C)
    return cols.reshape(*cols.shape[:3], -1), xp.shape


def col2im(cols, padded_shape, k, stride, pad, c):
    out = np.zeros(padded_shape)
    n_, ho, wo, _ = cols.shape
    cols = cols.reshape(n_, ho, wo, k * k, c)
    for t, (i, j) in enumerate((i, j) for i in range(k) for j in range(k)):
        out[:, i : i + stride * ho : stride, j : j + stride * wo : stride] += cols[:, :, :, t]
    return out[:, pad : padded_shape[1] - pad, pad : padded_shape[2] - pad]


def ref_conv(rule, x, w, b, R, stride, pad):
    k, c = w.shape[0], x.shape[-1]
    cols, padded = im2col(x, k, stride, pad)
    ones_cols, _ = im2col(np.ones_like(x), k, stride, pad)
    shape = cols.shape
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    w2 = w.reshape(-1, w.shape[-1])
    if isinstance(rule, Flat | WSquare):
        # The modified input is all ones, but padding positions stay zero.
        ones = flat(ones_cols)
        wm = np.ones_like(w2) if isinstance(rule, Flat) else w2**2
        bm = 0.0 if isinstance(rule, Flat) else b**2
        r = ones * ((flat(R) / stab(ones @ wm + bm, rule.stabilizer)) @ wm.T)
    elif isinstance(rule, ZBox):
        lo_cols = LOW * ones_cols
        hi_cols = HIGH * ones_cols
        xs, ls, hs = flat(cols), flat(lo_cols), flat(hi_cols)
        z = xs @ w2 + b - ls @ p(w2) - p(b) - hs @ n(w2) - n(b)
        s = flat(R) / stab(z, rule.stabilizer)
        r = xs * (s @ w2.T) - ls * (s @ p(w2).T) - hs * (s @ n(w2).T)
    else:
        r = ref_dense(rule, flat(cols), w2, b, flat(R))
    return col2im(r.reshape(shape), padded, k, stride, pad, c)


def relevance(rule, fn, x, w, b, R, nonneg=False):
    """Eager (tiny layers: compiling each case would dominate); `test_rules_jit` runs them jitted."""
    _, vjp = jax.vjp(lambda a: attach(rule, fn, (a,), (w, b), nonneg=nonneg), x)
    return np.asarray(vjp(R)[0])


PARAM_RULES = [
    Epsilon(0.01),
    Epsilon(0.0),
    ZPlus(),
    ZPlus(stabilizer=0.01),
    AlphaBeta(2.0, 1.0),
    AlphaBeta(1.0, 0.0),
    AlphaBeta(1.5, 0.7),
    Gamma(0.25),
    Gamma(1.0),
    Flat(),
    WSquare(),
    ZBox(LOW, HIGH),
]


@pytest.mark.parametrize("rule", PARAM_RULES, ids=repr)
def test_rule_dense(rule):
    x = RNG.standard_normal((3, 7))
    w = RNG.standard_normal((7, 5))
    b = 0.3 * RNG.standard_normal(5)
    R = RNG.standard_normal((3, 5))
    got = relevance(rule, linear, x, w, b, R)
    np.testing.assert_allclose(got, ref_dense(rule, x, w, b, R), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 1), (2, 0)])
@pytest.mark.parametrize("rule", PARAM_RULES, ids=repr)
def test_rule_conv(rule, stride, pad):
    x = RNG.standard_normal((2, 7, 7, 3))
    w = RNG.standard_normal((3, 3, 3, 4))
    b = 0.3 * RNG.standard_normal(4)
    fn = functools.partial(conv2d, stride=stride, padding=pad)
    R = RNG.standard_normal(fn(x, w, b).shape)
    got = relevance(rule, fn, x, w, b, R)
    np.testing.assert_allclose(got, ref_conv(rule, x, w, b, R, stride, pad), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", [Epsilon(), ZPlus(), AlphaBeta(), Gamma()], ids=repr)
def test_rule_grouped_conv(rule):
    """A depthwise conv equals a full conv with a block-diagonal kernel (zeros contribute nothing)."""
    x = RNG.standard_normal((2, 6, 6, 4))
    w = RNG.standard_normal((3, 3, 1, 4))
    b = 0.3 * RNG.standard_normal(4)
    full = np.zeros((3, 3, 4, 4))
    for ch in range(4):
        full[:, :, ch, ch] = w[:, :, 0, ch]
    fn = functools.partial(conv2d, stride=1, padding=1, groups=4)
    R = RNG.standard_normal(fn(x, w, b).shape)
    got = relevance(rule, fn, x, w, b, R)
    np.testing.assert_allclose(got, ref_conv(rule, x, full, b, R, 1, 1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", [ZPlus(), AlphaBeta(), Gamma(), Epsilon()], ids=repr)
def test_nonnegative_inputs_shortcut_is_exact(rule):
    """Rules skip the x- terms on rectified inputs; the result must not change."""
    x = np.maximum(RNG.standard_normal((2, 6, 6, 3)), 0.0)
    w = RNG.standard_normal((3, 3, 3, 4))
    b = 0.3 * RNG.standard_normal(4)
    fn = functools.partial(conv2d, stride=1, padding=1)
    R = RNG.standard_normal(fn(x, w, b).shape)
    full = relevance(rule, fn, x, w, b, R, nonneg=False)
    short = relevance(rule, fn, x, w, b, R, nonneg=True)
    np.testing.assert_allclose(short, full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(short, ref_conv(rule, x, w, b, R, 1, 1), rtol=1e-10, atol=1e-12)


def test_rules_jit():
    """All rules at once through jax.jit (one compilation), against the closed forms."""
    x = RNG.standard_normal((2, 7, 7, 3))
    w = RNG.standard_normal((3, 3, 3, 4))
    b = 0.3 * RNG.standard_normal(4)
    fn = functools.partial(conv2d, stride=2, padding=1)
    R = RNG.standard_normal(fn(x, w, b).shape)

    @jax.jit
    def run(x, w, b, R):
        out = []
        for rule in PARAM_RULES:
            _, vjp = jax.vjp(lambda a, rule=rule: attach(rule, fn, (a,), (w, b)), x)
            out.append(vjp(R)[0])
        return out

    for rule, got in zip(PARAM_RULES, run(x, w, b, R)):
        ref = ref_conv(rule, x, w, b, R, 2, 1)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=repr(rule))


def test_paper_conv_rule_keeps_the_raw_bias():
    """alpha1-beta0 with bias="whole": z = W+ x+ + W- x- + b, stabiliser 0.01 sign(z)."""
    x = RNG.standard_normal((3, 6))
    w = RNG.standard_normal((6, 4))
    b = RNG.standard_normal(4)
    R = RNG.standard_normal((3, 4))
    got = relevance(AlphaBeta(1.0, 0.0, 0.01, bias="whole"), linear, x, w, b, R)
    np.testing.assert_allclose(got, share([p(x), n(x)], [p(w), n(w)], b, R, 0.01), rtol=1e-10)


def relevance_free(rule, fn, xs, R, nonneg=False):
    @jax.jit
    def run(xs, R):
        _, vjp = jax.vjp(lambda *a: attach(rule, fn, a, nonneg=nonneg), *xs)
        return vjp(R)

    return [np.asarray(r) for r in run(tuple(xs), R)]


def test_sum_rules():
    a, b = RNG.standard_normal((2, 4, 4, 3)), RNG.standard_normal((2, 4, 4, 3))
    R = RNG.standard_normal((2, 4, 4, 3))
    ra, rb = relevance_free(Norm(1e-6), lambda u, v: u + v, (a, b), R)
    np.testing.assert_allclose(ra, a * R / stab(a + b, 1e-6), rtol=1e-10)
    np.testing.assert_allclose(rb, b * R / stab(a + b, 1e-6), rtol=1e-10)
    ra, rb = relevance_free(NormPlus(1e-12), lambda u, v: u + v, (a, b), R)
    np.testing.assert_allclose(ra, p(a) * R / (p(a) + p(b) + 1e-12), rtol=1e-10)
    np.testing.assert_allclose(rb, p(b) * R / (p(a) + p(b) + 1e-12), rtol=1e-10)


def test_average_pooling_rules():
    x = RNG.standard_normal((2, 6, 6, 3))
    R = RNG.standard_normal((2, 3, 3, 3))
    blocks = x.reshape(2, 3, 2, 3, 2, 3)
    up = lambda a: np.repeat(np.repeat(a, 2, axis=1), 2, axis=2)  # noqa: E731
    (r,) = relevance_free(NormPlus(1e-8), lambda a: avg_pool(a, 2, 2), (x,), R)
    np.testing.assert_allclose(r, p(x) * up(R / (p(blocks).sum((2, 4)) + 4e-8)), rtol=1e-10)
    (r,) = relevance_free(Norm(1e-6), lambda a: avg_pool(a, 2, 2), (x,), R)
    np.testing.assert_allclose(r, x * up(R / stab(blocks.sum((2, 4)), 4e-6)), rtol=1e-10)
    # global average pooling: in proportion to x+ over the whole map
    Rg = RNG.standard_normal((2, 1, 1, 3))
    (r,) = relevance_free(NormPlus(1e-8), lambda a: a.mean((1, 2), keepdims=True), (x,), Rg)
    np.testing.assert_allclose(r, p(x) * Rg / (p(x).sum((1, 2), keepdims=True) + 36e-8), rtol=1e-10)


def test_pass_rule():
    x = RNG.standard_normal((2, 5))
    R = RNG.standard_normal((2, 5))
    (r,) = relevance_free(Pass(), jax.nn.relu, (x,), R)
    np.testing.assert_array_equal(r, R)


def test_stabilizer_sign_of_zero_is_positive():
    z = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(stabilize(z, 0.5), [-2.5, 0.5, 3.5])


def test_rules_compose_with_second_order():
    """d/dw of a relevance map equals the derivative of the closed form (finite differences)."""
    x = RNG.standard_normal((3, 6))
    w = RNG.standard_normal((6, 4))
    b = RNG.standard_normal(4)
    R = RNG.standard_normal((3, 4))

    def loss(w):
        _, vjp = jax.vjp(lambda a: attach(Epsilon(0.01), linear, (a,), (w, b)), x)
        return jnp.sum(vjp(R)[0] ** 2)

    g = np.asarray(jax.jit(jax.grad(loss))(w))
    v = RNG.standard_normal(w.shape)
    h = 1e-6
    ref = lambda w: np.sum(ref_dense(Epsilon(0.01), x, w, b, R) ** 2)  # noqa: E731
    fd = (ref(w + h * v) - ref(w - h * v)) / (2 * h)
    np.testing.assert_allclose(np.sum(g * v), fd, rtol=1e-6)


# --- composites -------------------------------------------------------------------------------


def test_builtin_composites_follow_zennit():
    for name in ("epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_gamma_box"):
        comp = get_composite(name)
        assert comp.rule_for(Linear, "fc", first=False) == Epsilon(1e-6)
        assert comp.rule_for(ReLU, "relu", first=False) == Pass()
        assert comp.rule_for(BatchNorm, "bn1", first=False) == Pass()
        assert comp.rule_for(MaxPool, "maxpool", first=False) is None  # gradient: winner takes all
    assert EpsilonPlus().rule_for(Conv, "conv1", first=True) == ZPlus(1e-6)
    assert EpsilonPlusFlat().rule_for(Conv, "conv1", first=True) == Flat(1e-6)
    assert EpsilonPlusFlat().rule_for(Conv, "conv2", first=False) == ZPlus(1e-6)
    assert EpsilonGammaBox().rule_for(Conv, "conv1", first=True) == ZBox(None, None, 1e-6)
    assert EpsilonGammaBox().rule_for(Conv, "conv2", first=False) == Gamma(0.25, 1e-6)
    assert get_composite("epsilon_alpha2_beta1").rule_for(Conv, "c", False) == AlphaBeta(2, 1)


def test_paper_composite():
    comp = get_composite("paper")
    assert comp == PaperComposite()
    assert comp.rule_for(Linear, "classifier.6", False) == Epsilon(0.01)
    assert comp.rule_for(Conv, "features.0", True) == AlphaBeta(1.0, 0.0, 0.01, bias="whole")
    assert comp.rule_for(BatchNorm, "bn1", False) == Pass()


def test_user_composite_names_win_over_types():
    comp = LayerMapComposite(
        layer_map={Conv: ZPlus(), Linear: Epsilon(0.25)}, name_map={"features.0": Flat()}
    )
    hash(comp)  # a static argument of jax.jit
    assert comp.rule_for(Conv, "features.0", True) == Flat()
    assert comp.rule_for(Conv, "features.2", False) == ZPlus()
    assert comp.rule_for(ReLU, "features.1", False) is None
    with pytest.raises(TypeError, match="Rule instances"):
        LayerMapComposite(layer_map={Conv: "zplus"})
    with pytest.raises(ValueError, match="unknown composite"):
        get_composite("epsilon")


def test_lrp_errors_name_the_fix():
    from jaxsal import init
    from jaxsal.lrp import attribute as lrp

    params = init("small_cnn", jax.random.key(0))
    x = np.zeros((1, 48, 48, 1), np.float32)
    with pytest.raises(ValueError, match="pass low= and high="):
        lrp(params, x, 0, composite="epsilon_gamma_box")
    with pytest.raises(ValueError, match="unknown composite"):
        lrp(params, x, 0, composite="zplus")
    with pytest.raises(TypeError, match="canonizers=()"):
        lrp(params, x, 0, canonizers=["fold"])
    with pytest.raises(ValueError, match="NHWC"):
        lrp(params, x.transpose(0, 3, 1, 2), 0)
