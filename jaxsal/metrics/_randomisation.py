"""Randomisation: does the explanation change when the class or the weights do?

`random_logit` explains a random other class; `model_parameter_randomisation`
re-initialises the model's layers from the top, cumulatively, with
`jaxsal.sanity.randomization` and compares each step's maps with the original.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.metrics._common import check_images, check_key, check_labels, check_map, prepare
from jaxsal.metrics._rank import spearman

__all__ = ["flat_ssim", "model_parameter_randomisation", "random_logit"]

LAYER_ORDERS = ("top_down", "bottom_up", "independent")


def flat_ssim(a: jax.Array, b: jax.Array, *, win_size: int = 7) -> jax.Array:
    """SSIM of each pair of flattened maps, Quantus's default similarity of `random_logit`.

    Quantus calls ``skimage.metrics.structural_similarity(a_i, b_i,
    data_range=max - min over both)`` on the flattened maps: a 1-D SSIM with
    a uniform window of `win_size` values, sample covariances and
    c1 = (0.01 L)^2, c2 = (0.03 L)^2, averaged over the windows that lie
    inside the signal.

    Differentiable in `a` and `b`.

    Args:
      a: (N, ...) maps; each is flattened.
      b: maps of the same shape.
      win_size: window length (odd; skimage's default 7).

    Returns:
      (N,) similarities, 1 for equal maps.

    References:
      Wang, Bovik, Sheikh and Simoncelli. Image quality assessment: from error
      visibility to structural similarity. IEEE TIP 2004.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"flat_ssim needs two batches of one shape (N, ...), got {a.shape}, {b.shape}"
        )
    n = a.shape[0]
    a, b = a.reshape(n, -1), b.reshape(n, -1)
    m = a.shape[1]
    if m < win_size:
        raise ValueError(f"flat_ssim needs maps of at least win_size={win_size} values, got {m}")
    lo = jnp.minimum(a.min(axis=1), b.min(axis=1))[:, None]
    hi = jnp.maximum(a.max(axis=1), b.max(axis=1))[:, None]
    c1, c2 = (0.01 * (hi - lo)) ** 2, (0.03 * (hi - lo)) ** 2

    def mean(v):  # the mean of every window lying inside the signal
        return sum(v[:, k : m - win_size + 1 + k] for k in range(win_size)) / win_size

    cov = win_size / (win_size - 1)
    ux, uy = mean(a), mean(b)
    vx = cov * (mean(a * a) - ux * ux)
    vy = cov * (mean(b * b) - uy * uy)
    vxy = cov * (mean(a * b) - ux * uy)
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(axis=1)


def random_logit(
    explain: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    num_classes: int,
    similarity: Callable | None = None,
    abs: bool = False,
    normalise: bool = True,
) -> jax.Array:
    """Random logit: similarity of the map of `y` to the map of a random other class.

    The other class of image i is the r_i-th class other than y_i, r drawn as
    ``jax.random.randint(k1, (N,), 0, num_classes - 1)`` with ``k1, k2 =
    jax.random.split(key)``, and explained with ``explain(x, y_other, k2)``
    (Quantus draws r with ``np.random.randint`` under a fixed seed).
    `num_classes` is required: Quantus's default of 1000 (ImageNet) would
    silently index past a smaller model's classes.

    Differentiable in `a` and in `explain`'s parameters with the default
    similarity (`flat_ssim`).

    Args:
      explain: ``explain(x, y, key) -> a`` with the shape of `a` (traceable).
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: the maps of class `y`, (N, H, W) or (N, H, W, C).
      key: PRNG key of the other classes (and of `explain`).
      num_classes: the model's number of classes (at least 2).
      similarity: ``similarity(a, b) -> (N,)`` on flattened (N, M) maps;
        default `flat_ssim` (Quantus's `ssim`); e.g. `jaxsal.metrics.spearman`.
      abs: compare absolute maps.
      normalise: divide each map by its largest absolute value first
        (Quantus's default).

    Returns:
      (N,) similarities (lower means the map depends on the class).

    References:
      Sixt, Granz and Landgraf. When explanations lie: why many modified BP
      attributions fail. ICML 2020.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a)
    check_key(key)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int of at least 2, got {num_classes!r}")
    k_class, k_explain = jax.random.split(key)
    r = jax.random.randint(k_class, (n,), 0, num_classes - 1, dtype=y.dtype)
    other = r + (r >= y)  # the r-th class in ascending order, skipping y
    a_other = explain(x, other, k_explain)
    if a_other.shape != a.shape:
        raise ValueError(
            f"explain(x, y, key) returned shape {tuple(a_other.shape)}; it must return maps of "
            f"the shape of a, {tuple(a.shape)}"
        )
    similarity = flat_ssim if similarity is None else similarity
    flat = lambda v: prepare(v, abs=abs, normalise=normalise).reshape(n, -1)  # noqa: E731
    return similarity(flat(a), flat(a_other))


def model_parameter_randomisation(
    explain: Callable,
    params,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    layer_order: str = "top_down",
    similarity: Callable | None = None,
    abs: bool = True,
    normalise: bool = True,
    fresh=None,
) -> jax.Array:
    """Model parameter randomisation: similarity of the maps as the weights are re-drawn.

    Step 0 explains the model as it is; step k re-initialises k layers with
    their own initialisers (`jaxsal.sanity.randomization`): the top k for
    "top_down" (cascading, Quantus's default), the first k for "bottom_up", or
    layer k - 1 alone for "independent" (layers in forward order,
    `jaxsal.sanity.parameter_layers`). Every step's maps are compared with
    `a` by `similarity`. Quantus returns a dict {"original": ..., layer:
    ...}; here column k is step k (column 0 is Quantus's "original"), and its
    `return_last_correlation` is the last column. The fresh weights are
    ``fresh_params(params, k1)`` and `explain` gets ``k2`` at every step
    (``k1, k2 = jax.random.split(key)``). Quantus re-draws torch layers with
    ``reset_parameters`` under ``torch.manual_seed``; jaxsal draws with the
    flax initialisers, so the two agree only when given the same fresh weights
    (pass them as `fresh`).

    Not differentiable with the default similarity (Spearman ranks).

    Args:
      explain: ``explain(params, x, y, key) -> a`` (traceable, hashable: it is a
        static argument of a jit; define it once and reuse it).
      params: the trained `jaxsal.ModelParams`.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: the maps of the trained model, (N, H, W) or (N, H, W, C).
      key: PRNG key of the fresh weights (and of `explain`).
      layer_order: "top_down", "bottom_up" or "independent".
      similarity: ``similarity(a, b) -> (N,)`` on flattened (N, M) maps;
        default `jaxsal.metrics.spearman` (Quantus's `correlation_spearman`).
      abs: compare absolute maps (Quantus's default here).
      normalise: divide each map by its largest absolute value first
        (Quantus's default; no effect on Spearman).
      fresh: the fresh draw (a `ModelParams` like `params`); overrides the
        one from `key`.

    Returns:
      (N, L + 1) similarities for L parameterised layers.

    References:
      Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim. Sanity checks for
      saliency maps. NeurIPS 2018.
    """
    # imported on use: jaxsal.sanity imports jaxsal.metrics
    from jaxsal.sanity import randomization

    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a)
    check_key(key)
    if layer_order not in LAYER_ORDERS:
        raise ValueError(
            f'layer_order must be one of {", ".join(LAYER_ORDERS)}, got "{layer_order}"'
        )
    layers = tuple(randomization.parameter_layers(params))
    num = len(layers)
    if layer_order == "top_down":
        masks = randomization.cascading_masks(num)
    elif layer_order == "bottom_up":
        masks = np.arange(num)[None, :] < np.arange(num + 1)[:, None]
    else:
        masks = np.vstack([np.zeros((1, num), bool), randomization.independent_masks(num)])
    k_fresh, k_explain = jax.random.split(key)
    if fresh is None:
        fresh = randomization.fresh_params(params, k_fresh)
    maps = randomization.randomized_maps(
        params, x, y, explain, masks, key=k_explain, layers=layers, fresh=fresh
    )
    similarity = spearman if similarity is None else similarity
    flat = lambda v: prepare(v, abs=abs, normalise=normalise).reshape(n, -1)  # noqa: E731
    return jax.vmap(lambda m: similarity(flat(a), flat(m)))(maps).T
