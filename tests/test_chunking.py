"""Memory-safe defaults: `chunk="auto"` for SmoothGrad, VarGrad and Integrated Gradients.

Chunking changes how many images go through the model per pass, never the
result (float64, to 1e-12); the auto rule picks the largest divisor of the
sample count that keeps chunk x N images under the budget of 64 float32 images
of 224 x 224 x 3 (`jaxsal.hyper.auto_chunk`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsal
from jaxsal.hyper import AUTO_CHUNK_BYTES, auto_chunk, divisors
from jaxsal.interpreters import noise
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import init_module

F64 = jnp.float64
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def cnn():
    return init_module(SmallCNN(widths=(8, "M", 16)), jax.random.key(1), dtype=F64)


def test_budget_is_64_float32_imagenet_images():
    assert AUTO_CHUNK_BYTES == 64 * 224 * 224 * 3 * 4


@pytest.mark.parametrize(
    "total, shape, dtype, want",
    [
        (50, (1, 224, 224, 3), jnp.float32, 50),  # 50 images: within 64
        (50, (2, 224, 224, 3), jnp.float32, 25),  # 32 samples fit: largest divisor 25
        (50, (4, 224, 224, 3), jnp.float32, 10),  # 16 fit: 10
        (64, (4, 224, 224, 3), jnp.float32, 16),
        (50, (4, 224, 224, 3), jnp.float64, 5),  # half the images in float64: 8 fit
        (50, (4, 224, 224, 3), jnp.float16, 25),  # twice in float16: 32 fit
        (53, (4, 224, 224, 3), jnp.float32, 1),  # a prime: one sample per pass
        (50, (100, 224, 224, 3), jnp.float32, 1),  # N alone over budget: still one
        (50, (8, 96, 96, 1), jnp.float32, 50),  # small digit scenes: all at once
        (50, (64, 448, 448, 3), jnp.float32, 1),
    ],
)
def test_auto_chunk_rule(total, shape, dtype, want):
    assert auto_chunk(total, shape, dtype) == want


def test_divisors():
    assert divisors(50) == [1, 2, 5, 10, 25, 50]
    assert divisors(1) == [1]


def test_default_chunk_is_auto(cnn, monkeypatch):
    seen = []
    real = noise.over_samples

    def spy(fn, xs, cs, chunk):
        seen.append(chunk)
        return real(fn, xs, cs, chunk)

    monkeypatch.setattr(noise, "over_samples", spy)
    x = jnp.zeros((1, 12, 12, 1), F64)
    jaxsal.smoothgrad(cnn, x, 0, key=KEY, samples=6)
    assert seen == [auto_chunk(6, x.shape, x.dtype)] == [6]


@pytest.mark.parametrize("method", [jaxsal.smoothgrad, jaxsal.vargrad])
@pytest.mark.parametrize("chunk", [1, 3, "auto"])
def test_noise_tunnels_chunked_equal_unchunked(cnn, method, chunk):
    x = jax.random.normal(jax.random.key(2), (2, 12, 12, 1), F64)
    c = jnp.array([1, 7])
    whole = method(cnn, x, c, key=KEY, samples=6, chunk=None)
    part = method(cnn, x, c, key=KEY, samples=6, chunk=chunk)
    np.testing.assert_allclose(part, whole, rtol=1e-12, atol=1e-12 * float(jnp.abs(whole).max()))


@pytest.mark.parametrize("chunk", [1, 4, "auto"])
def test_integrated_gradients_chunked_equal_unchunked(cnn, chunk):
    x = jax.random.normal(jax.random.key(3), (2, 12, 12, 1), F64)
    whole = jaxsal.integrated_gradients(cnn, x, 2, steps=8, chunk=None)
    part = jaxsal.integrated_gradients(cnn, x, 2, steps=8, chunk=chunk)
    np.testing.assert_allclose(part, whole, rtol=1e-12, atol=1e-12 * float(jnp.abs(whole).max()))


def test_chunked_under_jit_and_grad(cnn):
    """A chunked noise tunnel inside a user's jitted second-order loss."""
    x = jax.random.normal(jax.random.key(4), (1, 12, 12, 1), F64)

    def loss(p, chunk):
        return (jaxsal.smoothgrad(p, x, 0, key=KEY, samples=4, chunk=chunk) ** 2).sum()

    g1 = jax.jit(jax.grad(loss), static_argnums=1)(cnn, 1)
    g4 = jax.jit(jax.grad(loss), static_argnums=1)(cnn, None)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
