"""Robustness of explanations to small input noise: max / average sensitivity, local Lipschitz.

Each sample adds noise to the whole input, explains the noisy input again with
``explain(x, y, key) -> a`` and compares the two maps. Sample s draws its noise
from ``k_noise, k_explain = jax.random.split(jax.random.split(key,
nr_samples)[s])`` and explains with ``k_explain``; Quantus draws with
``np.random`` and needs a deterministic `explain_func`, so to compare the two
give it the same noise (its `perturb_func`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import (
    check_images,
    check_key,
    check_labels,
    check_map,
    check_positive,
    predictions,
    prepare,
)

__all__ = ["avg_sensitivity", "local_lipschitz_estimate", "max_sensitivity"]


def _norm(v: jax.Array) -> jax.Array:
    return jnp.sqrt((v**2).sum(axis=1))


def _samples(explain, x, y, a, draw, measure, *, key, nr_samples, abs, normalise, model, nan):
    """(S, N) values of `measure(a, a_noisy, x, x_noisy)` over `nr_samples` noisy inputs."""
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a)
    if a.shape[0] != n:
        raise ValueError(f"a must hold one map per image of x ({n}), got shape {tuple(a.shape)}")
    check_key(key)
    check_positive(nr_samples, "nr_samples")
    if nan and model is None:
        raise ValueError(
            "return_nan_when_prediction_changes=True needs model=, the classifier "
            "(e.g. lambda x: jaxsal.logits(params, x))"
        )
    ref = prepare(a, abs=abs, normalise=normalise).reshape(n, -1)
    labels = predictions(model, x) if nan else None

    def one(k):
        k_noise, k_explain = jax.random.split(k)
        xp = x + draw(k_noise, x.shape, x.dtype)
        ap = explain(xp, y, k_explain)
        if ap.size != ref.size:
            raise ValueError(
                f"explain(x, y, key) returned shape {tuple(ap.shape)}; it must return maps of "
                f"the shape of a, {tuple(a.shape)}"
            )
        ap = prepare(ap, abs=abs, normalise=normalise).reshape(n, -1)
        value = measure(ref, ap, x.reshape(n, -1), xp.reshape(n, -1))
        if nan:
            value = jnp.where(predictions(model, xp) != labels, jnp.nan, value)
        return value

    return jax.lax.map(one, jax.random.split(key, nr_samples))


def _uniform(lower_bound, upper_bound):
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    if not high > low:
        raise ValueError(f"upper_bound ({upper_bound}) must exceed lower_bound ({lower_bound})")
    return lambda k, shape, dtype: jax.random.uniform(k, shape, dtype, low, high)


def _relative_change(a, ap, x, xp):
    return _norm(a - ap) / _norm(a)


def max_sensitivity(
    explain: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    abs: bool = False,
    normalise: bool = False,
    model: Callable | None = None,
    return_nan_when_prediction_changes: bool = False,
) -> jax.Array:
    """Max-sensitivity: the largest relative change of the map under uniform input noise.

    ``max_s ||a - a_s|| / ||a||`` (Frobenius norms over each map), with
    ``a_s = explain(x + u_s, y)`` and ``u_s`` uniform noise on every input
    value (NaN samples ignored, as Quantus's `np.nanmax`).

    Differentiable in `a` and in `explain`'s parameters (through the largest
    sample).

    Args:
      explain: ``explain(x, y, key) -> a`` with the shape of `a` (traceable).
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: the maps of `x`, (N, H, W) or (N, H, W, C), as `explain` returns them.
      key: PRNG key of the noise (and of `explain`).
      nr_samples: noisy inputs per image (Quantus: 200).
      lower_bound: noise is uniform in [-lower_bound, lower_bound] (Quantus: 0.2) ...
      upper_bound: ... or in [lower_bound, upper_bound] when given.
      abs: compare absolute maps.
      normalise: divide each map by its largest absolute value first.
      model: ``model(x) -> logits``; needed only for the option below.
      return_nan_when_prediction_changes: give NaN for samples whose
        predicted class differs from that of `x` (then any such sample makes
        the result NaN, as in Quantus).

    Returns:
      (N,) sensitivities (lower is more robust).

    References:
      Yeh, Hsieh, Suggala, Inouye and Ravikumar. On the (in)fidelity and
      sensitivity of explanations. NeurIPS 2019.
    """
    values = _samples(
        explain, x, y, a, _uniform(lower_bound, upper_bound), _relative_change, key=key,
        nr_samples=nr_samples, abs=abs, normalise=normalise, model=model,
        nan=return_nan_when_prediction_changes,
    )  # fmt: skip
    return (jnp.max if return_nan_when_prediction_changes else jnp.nanmax)(values, axis=0)


def avg_sensitivity(
    explain: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    abs: bool = False,
    normalise: bool = False,
    model: Callable | None = None,
    return_nan_when_prediction_changes: bool = False,
) -> jax.Array:
    """Avg-sensitivity: the mean relative change of the map under uniform input noise.

    ``mean_s ||a - a_s|| / ||a||``, as `max_sensitivity` but averaged (NaN
    samples ignored, as Quantus's `np.nanmean`).

    Differentiable in `a` and in `explain`'s parameters.

    Args:
      explain: ``explain(x, y, key) -> a`` with the shape of `a` (traceable).
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: the maps of `x`, (N, H, W) or (N, H, W, C), as `explain` returns them.
      key: PRNG key of the noise (and of `explain`).
      nr_samples: noisy inputs per image (Quantus: 200).
      lower_bound: noise is uniform in [-lower_bound, lower_bound] (Quantus: 0.2) ...
      upper_bound: ... or in [lower_bound, upper_bound] when given.
      abs: compare absolute maps.
      normalise: divide each map by its largest absolute value first.
      model: ``model(x) -> logits``; needed only for the option below.
      return_nan_when_prediction_changes: give NaN for samples whose
        predicted class differs from that of `x` (then any such sample makes
        the result NaN, as in Quantus).

    Returns:
      (N,) sensitivities (lower is more robust).

    References:
      Yeh, Hsieh, Suggala, Inouye and Ravikumar. On the (in)fidelity and
      sensitivity of explanations. NeurIPS 2019.
    """
    values = _samples(
        explain, x, y, a, _uniform(lower_bound, upper_bound), _relative_change, key=key,
        nr_samples=nr_samples, abs=abs, normalise=normalise, model=model,
        nan=return_nan_when_prediction_changes,
    )  # fmt: skip
    return (jnp.mean if return_nan_when_prediction_changes else jnp.nanmean)(values, axis=0)


def local_lipschitz_estimate(
    explain: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    nr_samples: int = 200,
    perturb_mean: float = 0.0,
    perturb_std: float = 0.1,
    abs: bool = False,
    normalise: bool = True,
    model: Callable | None = None,
    return_nan_when_prediction_changes: bool = False,
) -> jax.Array:
    """Local Lipschitz estimate: the largest ratio of map change to input change.

    ``max_s ||a - a_s||_2 / (||x - x_s||_2 + 1e-10)`` with ``x_s = x +
    perturb_mean + perturb_std * N(0, 1)`` on every input value and ``a_s =
    explain(x_s, y)`` (Quantus's `lipschitz_constant` with Euclidean norms;
    NaN samples ignored).

    Differentiable in `a` and in `explain`'s parameters (through the largest
    sample).

    Args:
      explain: ``explain(x, y, key) -> a`` with the shape of `a` (traceable).
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: the maps of `x`, (N, H, W) or (N, H, W, C), as `explain` returns them.
      key: PRNG key of the noise (and of `explain`).
      nr_samples: noisy inputs per image (Quantus: 200).
      perturb_mean: mean of the Gaussian noise.
      perturb_std: standard deviation of the Gaussian noise (Quantus: 0.1).
      abs: compare absolute maps.
      normalise: divide each map by its largest absolute value first
        (Quantus's default here).
      model: ``model(x) -> logits``; needed only for the option below.
      return_nan_when_prediction_changes: give NaN for samples whose
        predicted class differs from that of `x` (any makes the result NaN).

    Returns:
      (N,) estimates (lower is more robust).

    References:
      Alvarez-Melis and Jaakkola. On the robustness of interpretability
      methods. ICML 2018 workshop (arXiv:1806.08049).
    """

    def draw(k, shape, dtype):
        return perturb_mean + perturb_std * jax.random.normal(k, shape, dtype)

    def lipschitz(a, ap, x, xp):
        return _norm(a - ap) / (_norm(x - xp) + 1e-10)

    values = _samples(
        explain, x, y, a, draw, lipschitz, key=key, nr_samples=nr_samples, abs=abs,
        normalise=normalise, model=model, nan=return_nan_when_prediction_changes,
    )  # fmt: skip
    return (jnp.max if return_nan_when_prediction_changes else jnp.nanmax)(values, axis=0)
