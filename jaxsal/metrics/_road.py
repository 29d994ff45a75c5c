"""ROAD: remove and debias, with noisy linear imputation of the removed pixels.

The imputation of Rong et al. fills each removed pixel with the weighted mean
of its eight neighbours (1/6 for the four sides, 1/12 for the corners; pixels
outside the image do not count), removed neighbours being unknowns too, and
adds Gaussian noise. Quantus solves that sparse system directly with SciPy;
here it is the same system written for all pixels,

  ``m (D u - W (m u)) + (1 - m) u = m W ((1 - m) x)``,

(m the removal mask, W the neighbour sum, D the neighbour weights inside the
image) which is symmetric positive definite whenever every removed region
touches a kept pixel, and is solved by conjugate gradients with a 3x3 stencil:
no matrix is formed, so it scales to 224x224 images, jit-compiles, and is
differentiable in `x`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import (
    check_images,
    check_key,
    check_labels,
    check_map,
    pixel_map,
    predictions,
    prepare,
)

__all__ = ["noisy_linear_imputation", "road"]

# (dy, dx, weight) of the eight neighbours, as in Quantus and Rong et al.'s code.
_NEIGHBOURS = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)


def _neighbour_sum(v: jax.Array) -> jax.Array:
    """sum_j w_j v[i + offset_j] over the eight neighbours of each pixel of (H, W, C) `v`."""
    h, w = v.shape[:2]
    p = jnp.pad(v, ((1, 1), (1, 1), (0, 0)))
    return sum(wt * p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx, wt in _NEIGHBOURS)


def _impute(x, mask, z, *, noise, tol, maxiter):
    """One (H, W, C) image with the (H, W) `mask` pixels imputed, plus `noise * z` there."""
    m = mask[..., None].astype(x.dtype)
    weights = _neighbour_sum(jnp.ones_like(x[..., :1]))

    def operator(u):
        return m * (weights * u - _neighbour_sum(m * u)) + (1 - m) * u

    rhs = m * _neighbour_sum((1 - m) * x)
    u, _ = jax.scipy.sparse.linalg.cg(operator, rhs, tol=tol, atol=0.0, maxiter=maxiter)
    return jnp.where(m > 0, u + noise * z, x)


def noisy_linear_imputation(
    x: jax.Array,
    mask: jax.Array,
    *,
    key: jax.Array,
    noise: float = 0.01,
    tol: float = 1e-5,
    maxiter: int | None = None,
) -> jax.Array:
    """The masked pixels of each image replaced by their noisy linear imputation.

    Quantus's `noisy_linear_imputation` (after Rong et al.'s code), solved by
    conjugate gradients (see the module docstring). Every channel is imputed
    with the same neighbour weights; image i's noise is ``noise *
    jax.random.normal(jax.random.split(key, N)[i], (H, W, C))`` at its masked
    pixels.

    Differentiable in `x`.

    Args:
      x: (N, H, W, C) images.
      mask: (N, H, W) booleans, True where a pixel is removed and imputed. A
        removed region must touch a kept pixel (a fully masked image has no
        solution).
      key: PRNG key of the noise.
      noise: standard deviation of the added Gaussian noise (Quantus: 0.01).
      tol: relative residual at which conjugate gradients stop (1e-5 suits
        float32; use about 1e-12 in float64 to match a direct solver).
      maxiter: conjugate-gradient iterations at most (default H * W).

    Returns:
      (N, H, W, C) imputed images; unmasked pixels are `x` exactly.

    References:
      Rong, Leemann, Borisov, Kasneci and Kasneci. A consistent and efficient
      evaluation strategy for attribution methods. ICML 2022.
    """
    x = check_images(x)
    n, h, w, c = x.shape
    mask = jnp.asarray(mask)
    if mask.shape != (n, h, w):
        raise ValueError(f"mask must have shape ({n}, {h}, {w}) (N, H, W), got {mask.shape}")
    z = jax.vmap(lambda k: jax.random.normal(k, (h, w, c), x.dtype))(
        jax.random.split(check_key(key), n)
    )
    impute = partial(_impute, noise=noise, tol=tol, maxiter=maxiter or h * w)
    return jax.vmap(impute)(x, mask, z)


def road(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    percentages: Sequence[float] = tuple(range(1, 100, 2)),
    noise: float = 0.01,
    abs: bool = False,
    tol: float = 1e-5,
    maxiter: int | None = None,
) -> jax.Array:
    """ROAD (MoRF): does the model keep its class when the top pixels are imputed?

    For each percentage p the ``int(H * W * p / 100)`` most relevant pixels
    are replaced by their noisy linear imputation (`noisy_linear_imputation`)
    and the model's predicted class is compared with `y`. Quantus returns the
    accuracy over the batch for each percentage (the mean over axis 0 here).
    The noise of percentage j and image i is drawn from
    ``jax.random.split(key, (len(percentages), N))[j, i]``.

    Pixels are ranked by an (N, H, W) map; an (N, H, W, C) map is summed over
    its channels first (what `quantus.explain` returns by default). Quantus
    0.6.0 ranks the map broadcast to every channel and so works only for
    single-channel inputs; here every channel of a removed pixel is imputed.
    Its `normalise` option does not change the ranking, so there is none.

    Not differentiable (ranking and argmax).

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      key: PRNG key of the imputation noise.
      percentages: percentages of pixels removed (Quantus: 1, 3, ..., 99).
      noise: standard deviation of the imputation noise (Quantus: 0.01).
      abs: rank absolute attributions.
      tol: conjugate-gradient tolerance (see `noisy_linear_imputation`).
      maxiter: conjugate-gradient iterations at most (default H * W).

    Returns:
      (N, len(percentages)) floats: 1 where the prediction is still `y`.

    References:
      Rong, Leemann, Borisov, Kasneci and Kasneci. A consistent and efficient
      evaluation strategy for attribution methods. ICML 2022.
    """
    x = check_images(x)
    n, h, w, c = x.shape
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_key(key)
    counts = [int(h * w * p / 100) for p in percentages]
    if not counts or not all(0 <= k < h * w for k in counts):
        raise ValueError(
            f"percentages must be a non-empty sequence of numbers in [0, 100), got {percentages!r}"
        )
    att = pixel_map(prepare(a, abs=abs, normalise=False)).reshape(n, -1)
    # position of each pixel in the descending ranking
    rank = jnp.argsort(jnp.argsort(-att, axis=1, stable=True), axis=1).reshape(n, h, w)
    impute = partial(_impute, noise=noise, tol=tol, maxiter=maxiter or h * w)

    def one(args):
        count, keys = args
        z = jax.vmap(lambda k: jax.random.normal(k, (h, w, c), x.dtype))(keys)
        x_imputed = jax.vmap(impute)(x, rank < count, z)
        return predictions(model, x_imputed) == y

    kept = jax.lax.map(one, (jnp.asarray(counts), jax.random.split(key, (len(counts), n))))
    return kept.T.astype(x.dtype)
