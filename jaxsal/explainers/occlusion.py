"""Occlusion: the score drop when a sliding patch is replaced by the reference.

`saliency(u) = mean over the windows P covering u of f(x)_c - f(x_P)_c`,
where `x_P` is x with the window P replaced by the reference. Windows slide by
`stride`; the last row and column of windows are aligned with the image's
border so every pixel is covered.

References:
  Zeiler and Fergus. Visualizing and understanding convolutional networks.
  ECCV 2014. https://arxiv.org/abs/1311.2901
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.explainers._core import as_model, check_inputs
from jaxsal.explainers.references import make_reference


def window_starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Start indices of the windows along one axis (the last one flush with the border)."""
    if not 1 <= patch <= size or stride < 1:
        raise ValueError(f"patch must be in [1, {size}] and stride >= 1, got {patch}, {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return np.asarray(starts)


def windows(shape: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """Boolean windows (P, H, W), row-major over the window grid."""
    h, w = shape
    out = []
    for y in window_starts(h, patch, stride):
        for x in window_starts(w, patch, stride):
            win = np.zeros((h, w), bool)
            win[y : y + patch, x : x + patch] = True
            out.append(win)
    return np.stack(out)


@functools.partial(jax.jit, static_argnames=("batch",))
def _occlusion(model, x, c, r, wins, *, batch):
    n = x.shape[0]
    base = model(x)[jnp.arange(n), c]

    def drop(win):
        xo = jnp.where(win[None, :, :, None], r, x)
        return base - model(xo)[jnp.arange(n), c]

    drops = jax.lax.map(drop, wins, batch_size=batch)  # (P, N)
    w = wins.astype(x.dtype)
    total = jnp.einsum("pn,phw->nhw", drops, w)
    count = w.sum(axis=0)
    return (total / jnp.maximum(count, 1.0).reshape(1, *count.shape))[..., None]


def occlusion(
    model,
    x: jax.Array,
    c,
    *,
    key: jax.Array | None = None,
    patch: int = 16,
    stride: int = 8,
    reference=0.0,
    scores: str = "softmax",
    batch: int | None = None,
) -> jax.Array:
    """Occlusion map: mean score drop over the patches covering each pixel.

    Args:
      model: a `ModelParams` or a function `f(x) -> (N, classes)`.
      x: images (N, H, W, C).
      c: class per image.
      key: PRNG key (for a noise reference).
      patch: window side in pixels.
      stride: window step in pixels.
      reference: what an occluded pixel becomes (default 0, the mean after
        normalisation); see `jaxsal.explainers.references`.
      scores: "softmax" (probabilities), "log_softmax" or "raw".
      batch: windows evaluated per model call (None: one at a time).

    Returns:
      The map (N, H, W, 1): positive where occlusion lowers the score.

    References:
      Zeiler and Fergus (2014).
    """
    model = as_model(model, scores)
    x, c = check_inputs(model, x, c)
    wins = jnp.asarray(windows(x.shape[1:3], int(patch), int(stride)))
    r = make_reference(reference, x, key)
    return _occlusion(model, x, c, r, wins, batch=batch)
