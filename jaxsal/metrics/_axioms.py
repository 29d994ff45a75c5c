"""Axioms: completeness and non-sensitivity of attributions.

Features are the values of the NHWC input; an (N, H, W) map is broadcast over
the channels by `non_sensitivity` (as Quantus does) and summed as it is by
`completeness` (Quantus sums the map it is given).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import (
    baseline_value,
    check_baseline,
    check_images,
    check_labels,
    check_map,
    check_positive,
    class_scores,
    features,
    prepare,
)

__all__ = ["completeness", "non_sensitivity"]


def completeness(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    baseline: str | float = "black",
    output_func: Callable | None = None,
    abs: bool = False,
    normalise: bool = False,
    softmax: bool = False,
) -> jax.Array:
    """Completeness gap: the attributions' sum minus the score difference they explain.

    ``sum(a) - output_func(f(x) - f(x_b))`` with x_b the image filled with
    its baseline value and f the class logit: 0 for a complete attribution
    (e.g. gradient x input of a linear model with a zero baseline, or
    integrated gradients). Quantus returns the boolean ``gap == 0`` (exact
    float equality); compare ``jnp.abs(gap)`` with a tolerance instead.
    Quantus normalises the map by default, which rescales its sum so that
    completeness holds only by chance; jaxsal defaults to ``normalise=False``.

    Differentiable in `a`, `x` and the model's parameters.

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions (summed as given).
      baseline: "black" (each image's minimum), "white", "mean" or a number
        (0.0 for the usual zero baseline).
      output_func: applied to the score difference (default: identity).
      abs: use absolute attributions.
      normalise: divide each map by its largest absolute value first.
      softmax: score with the softmax probability instead of the logit.

    Returns:
      (N,) gaps.

    References:
      Sundararajan, Taly and Yan. Axiomatic attribution for deep networks.
      ICML 2017.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_baseline(baseline)
    x_b = jnp.broadcast_to(baseline_value(x, baseline), x.shape)
    diff = class_scores(model, x, y, softmax=softmax) - class_scores(model, x_b, y, softmax=softmax)
    if output_func is not None:
        diff = output_func(diff)
    return prepare(a, abs=abs, normalise=normalise).reshape(n, -1).sum(axis=1) - diff


def non_sensitivity(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    eps: float = 1e-5,
    baseline: str | float = "black",
    abs: bool = True,
    normalise: bool = True,
    softmax: bool = True,
    batch_size: int = 64,
) -> jax.Array:
    """Non-sensitivity: the features where attribution and model disagree about mattering.

    Each feature (value of the input) is replaced alone by the baseline; it
    counts when exactly one of "its attribution is below `eps`" and "the class
    score moved by less than `eps`" holds (the symmetric difference of the
    two sets). 0 means the zero-attribution features are exactly those the
    model ignores. Costs one forward pass per feature.

    Not differentiable (a count).

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      eps: threshold on attributions and on score changes (Quantus: 1e-5).
      baseline: "black" (each image's minimum), "white", "mean" or a number.
      abs: use absolute attributions (Quantus's default here).
      normalise: divide each map by its largest absolute value first
        (Quantus's default).
      softmax: score with the softmax probability (Quantus's default here).
      batch_size: features evaluated together (memory against speed).

    Returns:
      (N,) integer counts in [0, H*W*C] (lower is better).

    References:
      Nguyen and Rodríguez Martínez. On quantitative aspects of model
      interpretability. arXiv:2007.07584, 2020.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_baseline(baseline)
    check_positive(batch_size, "batch_size")
    f = features(prepare(a, abs=abs, normalise=normalise), x.shape).reshape(n, -1)
    xf = x.reshape(n, -1)
    fill = baseline_value(xf, baseline)[:, 0]
    y_pred = class_scores(model, x, y, softmax=softmax)

    def still(j):
        xp = xf.at[:, j].set(fill).reshape(x.shape)
        return jnp.abs(class_scores(model, xp, y, softmax=softmax) - y_pred) < eps

    insensitive = jax.lax.map(still, jnp.arange(f.shape[1]), batch_size=batch_size).T
    # a "non-feature" (tiny attribution) the model reacts to, or a feature it ignores
    return ((f < eps) != insensitive).sum(axis=1)
