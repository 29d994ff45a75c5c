"""SmoothGrad and VarGrad: statistics of an interpreter over noisy copies of x.

The noise is `stdev * jax.random.normal(key, (samples,) + x.shape)` with
`stdev = noise_level * (max(x_i) - min(x_i))` per image unless an absolute
`stdev` is given. The samples go through the model `chunk` at a time
(`lax.map` over chunks of `chunk` x N images); the default `chunk="auto"`
keeps a pass within a memory budget (`jaxsal.hyper.auto_chunk`: at most 64
float32 RGB images of 224 x 224 per pass, more for smaller inputs), `None`
puts all samples x N images in one batch, an int sets it (it must divide
`samples`). Chunking changes the memory, not the result.

References:
  Smilkov et al., SmoothGrad: removing noise by adding noise (2017).
  Adebayo et al., Local explanation methods for deep neural networks lack
  sensitivity to parameter randomization (2018) (VarGrad).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.hyper import check_chunk, check_count, check_nonnegative
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


def _validate(method, x, key, hyper):
    """Up-front checks of a noise tunnel's arguments; resolves `chunk`."""
    key = require_key(key, method)
    samples = check_count(hyper["samples"], "samples", method, example=50)
    check_nonnegative(hyper["noise_level"], "noise_level", method)
    stdev = hyper["stdev"]
    if stdev is not None:
        shape = tuple(getattr(stdev, "shape", ()))
        if shape not in ((), (1,), (x.shape[0],)):
            raise ValueError(
                f"{method}: stdev must be a scalar or one value per image, shape ({x.shape[0]},); "
                f"got shape {shape}"
            )
        check_nonnegative(stdev, "stdev", method)
    if not callable(hyper["base"]):
        raise TypeError(
            f"{method}: base must be an interpreter such as jaxsal.simple_grad, got "
            f"{type(hyper['base']).__name__}"
        )
    chunk = check_chunk(hyper["chunk"], samples, "samples", method, x.shape, x.dtype)
    return key, {**hyper, "samples": samples, "chunk": chunk}


def noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk):
    key = require_key(key, "a noise tunnel (smoothgrad / vargrad)")
    noise = jax.random.normal(key, (samples,) + x.shape, x.dtype)
    base_key = jax.random.fold_in(key, 1)  # for a stochastic base
    xs = x[None] + noise_stdev(x, noise_level, stdev)[None] * noise
    return over_samples(lambda b, cb: base(params, b, cb, key=base_key), xs, c, chunk)


@interpreter(static=("samples", "base", "chunk"), validate=_validate, chunk_of="samples")
def smoothgrad(
    params, x, c, *, key=None, samples=50, noise_level=0.15, stdev=None, base=simple_grad,
    chunk="auto",
):  # fmt: skip
    """Mean of `base` over `samples` noisy copies of x (SmoothGrad).

    Args:
      key: PRNG key for the noise (required).
      samples: number of noisy copies (50, as in the sanity-checks paper).
      noise_level: noise stdev as a fraction of each image's value range (0.15).
      stdev: absolute noise stdev, a scalar or one per image; overrides `noise_level`.
      base: the interpreter to smooth (default SimpleGrad): any function with the
        interpreter signature `base(params, x, c, *, key)`, the user's own included.
      chunk: samples per pass: "auto" (default) keeps chunk x N images of x's
        size under the budget of `jaxsal.hyper.auto_chunk` (64 float32 images
        of 224 x 224 x 3; the largest divisor of `samples` that fits), an int
        dividing `samples` sets it (smaller uses less memory, runs longer),
        None passes all samples x N images at once. The result does not depend
        on it. Out of memory, the eager call raises a MemoryError naming a
        smaller chunk to try.
    """
    attrs = noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk)
    return attrs.mean(axis=0)


@interpreter(static=("samples", "base", "chunk"), validate=_validate, chunk_of="samples")
def vargrad(
    params, x, c, *, key=None, samples=25, noise_level=0.15, stdev=None, base=simple_grad,
    chunk="auto",
):  # fmt: skip
    """Variance (over samples, ddof 0) of `base` on noisy copies of x (VarGrad).

    Arguments as for `smoothgrad`; 25 samples by default.
    """
    attrs = noisy_attributions(params, x, c, key, base, samples, noise_level, stdev, chunk)
    return jnp.var(attrs, axis=0)  # two-pass: never negative, unlike E[a^2] - E[a]^2
