"""SmoothGrad and VarGrad: statistics of an interpreter over noisy copies of x.

The noise is `stdev * jax.random.normal(key, (samples,) + x.shape)` with
`stdev = noise_level * (max(x_i) - min(x_i))` per image unless an absolute
`stdev` is given. All samples go through the model as one batch (or in
chunks of `chunk` samples through `lax.map`).

References:
  Smilkov et al., SmoothGrad: removing noise by adding noise (2017).
  Adebayo et al., Local explanation methods for deep neural networks lack
  sensitivity to parameter randomization (2018) (VarGrad).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.interpreters.base import interpreter, require_key
from jaxsal.interpreters.gradient import simple_grad


def noise_stdev(x, noise_level, stdev):
    """The noise stdev per image, shape (N, 1, 1, 1): absolute (scalar or per image) or relative."""
    if stdev is not None:
        s = jnp.reshape(jnp.asarray(stdev, x.dtype), (-1, 1, 1, 1))
        return jnp.broadcast_to(s, (x.shape[0], 1, 1, 1))
    rng = x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True)
    return noise_level * rng


def over_samples(fn, xs, cs, chunk):
    """fn on a stack of batches (S, N, ...), all at once or `chunk` samples at a time."""
    s, n = xs.shape[:2]
    if chunk is None or chunk >= s:
        out = fn(xs.reshape((s * n,) + xs.shape[2:]), jnp.tile(cs, s))
        return out.reshape((s, n) + out.shape[1:])
    if s % chunk:
        raise ValueError(f"chunk={chunk} must divide the number of samples ({s})")
    xs = xs.reshape((s // chunk, chunk * n) + xs.shape[2:])
    out = jax.lax.map(lambda b: fn(b, jnp.tile(cs, chunk)), xs)
    return out.reshape((s, n) + out.shape[2:])


def noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk):
    key = require_key(key, "a noise tunnel (smoothgrad / vargrad)")
    noise = jax.random.normal(key, (samples,) + x.shape, x.dtype)
    base_key = jax.random.fold_in(key, 1)  # for a stochastic base
    xs = x[None] + noise_stdev(x, noise_level, stdev)[None] * noise
    return over_samples(lambda b, cb: base(params, b, cb, key=base_key), xs, c, chunk)


@interpreter(static=("samples", "base", "chunk"))
def smoothgrad(
    params, x, c, *, key=None, samples=50, noise_level=0.15, stdev=None, base=simple_grad,
    chunk=None,
):  # fmt: skip
    """Mean of `base` over `samples` noisy copies of x (SmoothGrad).

    Args:
      key: PRNG key for the noise (required).
      samples: number of noisy copies (50, as in the sanity-checks paper).
      noise_level: noise stdev as a fraction of each image's value range (0.15).
      stdev: absolute noise stdev, a scalar or one per image; overrides `noise_level`.
      base: the interpreter to smooth (default SimpleGrad): any function with the
        interpreter signature `base(params, x, c, *, key)`, the user's own included.
      chunk: samples per pass (None: all at once).
    """
    attrs = noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk)
    return attrs.mean(axis=0)


@interpreter(static=("samples", "base", "chunk"))
def vargrad(
    params, x, c, *, key=None, samples=25, noise_level=0.15, stdev=None, base=simple_grad,
    chunk=None,
):  # fmt: skip
    """Variance (over samples, ddof 0) of `base` on noisy copies of x (VarGrad).

    Arguments as for `smoothgrad`; 25 samples by default.
    """
    attrs = noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk)
    return jnp.var(attrs, axis=0)  # two-pass: never negative, unlike E[a^2] - E[a]^2
