"""RISE: randomized input sampling; the score-weighted average of random masks.

Each mask is an s x s grid of Bernoulli(p) cells, upsampled bilinearly to
`(s + 1) * ceil(H / s)` pixels and cropped at a random shift below one cell,
so that the cells' borders fall anywhere. The saliency is

    S(u) = 1 / (M p) * sum_i f(x * M_i + (1 - M_i) * r)_c * M_i(u),

an estimate of E[f(x(M))_c | M(u) = 1]. The masks are drawn in chunks of
`batch` inside `jax.lax.scan` (the same masks for every image of the batch).

References:
  Petsiuk, Das and Saenko. RISE: randomized input sampling for explanation of
  black-box models. BMVC 2018. https://arxiv.org/abs/1806.07421
  (8,000 masks, 7 x 7 cells, p = 0.5 at 224 px; reference 0.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxsal.explainers._core import as_model, check_inputs, resize
from jaxsal.explainers.references import make_reference
from jaxsal.hyper import check_count
from jaxsal.interpreters.base import require_key


def rise_masks(key: jax.Array, count: int, shape: tuple[int, int], *, cells: int = 7,
               p: float = 0.5, dtype=jnp.float32) -> jax.Array:  # fmt: skip
    """`count` RISE masks of `shape` (H, W), values in [0, 1]: (count, H, W)."""
    h, w = shape
    ch, cw = -(-h // cells), -(-w // cells)
    k_grid, k_shift = jax.random.split(key)
    grid = (jax.random.uniform(k_grid, (count, cells, cells)) < p).astype(dtype)
    up = resize(grid, ((cells + 1) * ch, (cells + 1) * cw))
    dy = jax.random.randint(k_shift, (count,), 0, ch)
    dx = jax.random.randint(jax.random.fold_in(k_shift, 1), (count,), 0, cw)
    return jax.vmap(lambda u, a, b: jax.lax.dynamic_slice(u, (a, b), (h, w)))(up, dy, dx)


@functools.partial(jax.jit, static_argnames=("masks", "cells", "batch"))
def _rise(model, x, c, r, key, p, *, masks, cells, batch):
    n, h, w, _ = x.shape

    def chunk(total, k):
        m = rise_masks(k, batch, (h, w), cells=cells, p=p, dtype=x.dtype)[..., None]
        xm = m[None] * x[:, None] + (1.0 - m[None]) * r[:, None]  # (N, B, H, W, C)
        s = model(xm.reshape((n * batch,) + x.shape[1:])).reshape(n, batch, -1)
        s = jnp.take_along_axis(s, c.reshape(n, 1, 1), axis=2)[..., 0]
        return total + jnp.einsum("nb,bhw->nhw", s, m[..., 0]), None

    keys = jax.random.split(key, masks // batch)
    total, _ = jax.lax.scan(chunk, jnp.zeros((n, h, w), x.dtype), keys)
    return (total / (masks * p))[..., None]


def rise(
    model,
    x: jax.Array,
    c,
    *,
    key: jax.Array | None = None,
    masks: int = 8000,
    cells: int = 7,
    p: float = 0.5,
    reference=0.0,
    scores: str = "softmax",
    batch: int = 100,
) -> jax.Array:
    """RISE saliency (needs `key`).

    Args:
      model: a `ModelParams` or a function `f(x) -> (N, classes)`.
      x: images (N, H, W, C).
      c: class per image.
      key: PRNG key for the masks (and a noise reference).
      masks: number of masks M (8,000 in the paper), a multiple of `batch`.
      cells: grid side s (7).
      p: probability that a cell is kept (0.5).
      reference: the masked-out value (0: the mean after normalisation).
      scores: "softmax" probabilities (RISE's), "log_softmax" or "raw".
      batch: masks per model call (memory: N * batch images).

    Returns:
      The map (N, H, W, 1).

    References:
      Petsiuk et al. (2018).
    """
    key = require_key(key, "rise")
    check_count(batch, "batch", "rise")
    check_count(masks, "masks", "rise")
    if masks % batch:
        raise ValueError(f"masks ({masks}) must be a multiple of batch ({batch})")
    model = as_model(model, scores)
    x, c = check_inputs(model, x, c)
    k_mask, k_ref = jax.random.split(key)
    r = make_reference(reference, x, k_ref)
    return _rise(model, x, c, r, k_mask, p, masks=masks, cells=cells, batch=batch)
