"""LRP in float16 and bfloat16: finite maps close to the float32 map, for every composite.

Each rule's backward pass runs in float32 (`jaxsal.lrp.attach.attach`), the
forward pass in the half type. Measured here on random-weight small_cnn and
resnet18 (32 px, 2 images; `jaxsal.init` under float64 tests) against the
float32 map of the same weights, over the five composites and LRP_T:

- float16: relative L2 error 1.0e-3 to 5.9e-3, Spearman 0.9990 to 1.0000;
- bfloat16: relative L2 error 6.9e-3 to 3.1e-2, and up to 0.11 for the
  composites that subtract (alpha2-beta1, gamma); Spearman 0.9933 to 0.9999.

bfloat16's 8-bit mantissa already rounds the forward pass's activations to
about 3 digits. The bounds below leave a factor of about 2 over the worst case.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxsal
from jaxsal.lrp import COMPOSITES, EpsilonGammaBox, NormPlus, stabilize
from jaxsal.lrp.attach import in_float32
from jaxsal.lrp.rules import Layer

HALF = {"float16": jnp.float16, "bfloat16": jnp.bfloat16}
# dtype: (max relative L2 error, min Spearman correlation) against the float32 map
BOUNDS = {"float16": (0.015, 0.998), "bfloat16": (0.25, 0.985)}
SHAPES = {"small_cnn": (2, 32, 32, 1), "resnet18": (2, 32, 32, 3)}


@functools.cache
def model(arch):
    params = jaxsal.init(arch, jax.random.key(0), num_classes=10)
    if arch == "resnet18":  # XLA's convolutions compile 3x faster; small_cnn keeps the default
        params = params.with_conv("xla")
    x = jax.random.normal(jax.random.key(1), SHAPES[arch], jnp.float32)
    return params, x


def composite(name, arch):
    if name == "epsilon_gamma_box" and arch == "small_cnn":  # one channel: bounds of the data
        return EpsilonGammaBox(low=-5.0, high=5.0)
    return name


@functools.cache
def reference(arch, name, layer):
    params, x = model(arch)
    return np.asarray(jaxsal.lrp.attribute(params, x, 3, composite=composite(name, arch),
                                           layer=layer), np.float64)  # fmt: skip


def compare(arch, name, layer, dtype):
    params, x = model(arch)
    dt = HALF[dtype]
    r = jaxsal.lrp.attribute(params.astype(dt), x.astype(dt), 3, composite=composite(name, arch),
                             layer=layer)  # fmt: skip
    assert r.dtype == dt
    r = np.asarray(r.astype(jnp.float32), np.float64)
    ref = reference(arch, name, layer)
    assert np.isfinite(r).all(), f"{np.mean(~np.isfinite(r)):.1%} of the map is not finite"
    rel = np.linalg.norm(r - ref) / np.linalg.norm(ref)
    rho = scipy.stats.spearmanr(r.ravel(), ref.ravel()).statistic
    max_rel, min_rho = BOUNDS[dtype]
    assert rel < max_rel and rho > min_rho, (rel, rho)


@pytest.mark.parametrize("dtype", list(HALF))
@pytest.mark.parametrize("name", list(COMPOSITES))
@pytest.mark.parametrize("arch", list(SHAPES))
def test_every_composite_in_half_precision(arch, name, dtype):
    compare(arch, name, None, dtype)


@pytest.mark.parametrize("dtype", list(HALF))
@pytest.mark.parametrize("arch", list(SHAPES))
def test_lrp_t_in_half_precision(arch, dtype):
    compare(arch, "paper", "target", dtype)


def test_stabilizer_never_underflows_in_half_precision():
    z = jnp.array([0.0, -0.0, 1e-3, -1e-3], jnp.float16)
    s = stabilize(z, 1e-12)  # 1e-12 is 0 in float16
    assert (s != 0).all() and s[0] > 0
    assert float(stabilize(jnp.zeros((), jnp.bfloat16), 1e-12)) == pytest.approx(1e-12, rel=1e-2)
    z32 = jnp.array([0.0, -2.0, 3.0], jnp.float32)  # float32 unchanged: z + eps * sign(z)
    np.testing.assert_array_equal(stabilize(z32, 1e-12), z32 + jnp.float32(1e-12) * jnp.array(
        [1.0, -1.0, 1.0], jnp.float32))  # fmt: skip


def test_norm_plus_on_zeros_in_float16_is_zero_not_nan():
    xs = (jnp.zeros((1, 4), jnp.float16), jnp.zeros((1, 4), jnp.float16))
    fn = lambda a, b: a + b  # noqa: E731
    layer = Layer(fn, xs, None, None, fn(*xs), True)
    r = NormPlus(1e-12).relevance(layer, jnp.ones((1, 4), jnp.float16))
    assert all(np.isfinite(np.asarray(a, np.float32)).all() for a in r)


def test_in_float32_replays_half_literals_and_casts_in_float32():
    def fn(a, w):  # a literal and a cast in the half type
        return jnp.dot(a / 3.0, w).astype(a.dtype) + jnp.asarray(1e-4, a.dtype)

    a = jnp.array([[1.0, 2.0, 3.0]], jnp.float32)
    w = jnp.array([[1e-4], [2e4], [3.0]], jnp.float32)
    got = in_float32(fn, jnp.float16)(a, w)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, fn(a, w), rtol=1e-6)
    g = jax.grad(lambda a: in_float32(fn, jnp.float16)(a, w).sum())(a)
    np.testing.assert_allclose(g, jax.grad(lambda a: fn(a, w).sum())(a), rtol=1e-6)
