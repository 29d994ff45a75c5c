"""Captum's explanation infidelity and max-sensitivity (`captum.metrics`), in JAX.

Captum expands each input `n_perturb_samples` times and perturbs the expanded
batch with a user function; here sample s uses ``jax.random.split(key,
n_perturb_samples)[s]`` (split once more by `sensitivity_max`, see there).
Give Captum the same perturbations to compare the two.
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
    class_scores,
    features,
)

__all__ = ["infidelity", "sensitivity_max"]


def infidelity(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    n_perturb_samples: int = 10,
    noise_std: float = 0.003,
    perturb: Callable | None = None,
    normalize: bool = False,
) -> jax.Array:
    """Explanation infidelity: how well ``I . a`` predicts the score drop ``f(x) - f(x - I)``.

    ``mean_s (sum(I_s * a) - (f(x) - f(x_s)))^2`` over perturbations I_s with
    perturbed inputs x_s (Captum's `infidelity`, f the class logit). With
    `normalize` the attribution term is first rescaled by the least-squares
    factor ``beta = sum_s p_s d_s / sum_s p_s^2`` (1 where the denominator is
    0), which makes the value invariant to the scale of `a`. An (N, H, W) map
    is broadcast over the channels (Captum needs maps of the input's shape).

    Captum has no default perturbation; the default here is Gaussian, ``I_s =
    noise_std * N(0, 1)`` on every input value and ``x_s = x - I_s`` (the form
    of Captum's documentation example), drawn from ``jax.random.split(key,
    n_perturb_samples)[s]``.

    Differentiable in `a` (a quadratic) and in the model's parameters.

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      key: PRNG key of the perturbations.
      n_perturb_samples: perturbations per image (Captum: 10).
      noise_std: standard deviation of the default Gaussian perturbation.
      perturb: ``perturb(key, x) -> (I, x_perturbed)`` replacing the default
        (e.g. binary masks of features for attributions that already
        multiply by the input, with ``x_perturbed = x - I``).
      normalize: Captum's `normalize` (rescale the attributions optimally).

    Returns:
      (N,) infidelities (lower is better).

    References:
      Yeh, Hsieh, Suggala, Inouye and Ravikumar. On the (in)fidelity and
      sensitivity of explanations. NeurIPS 2019.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = features(check_map(a, x.shape), x.shape)
    check_key(key)
    check_positive(n_perturb_samples, "n_perturb_samples")
    if perturb is None:

        def perturb(k, x):
            noise = noise_std * jax.random.normal(k, x.shape, x.dtype)
            return noise, x - noise

    fx = class_scores(model, x, y, softmax=False)

    def one(k):
        noise, xp = perturb(k, x)
        if noise.shape != x.shape or xp.shape != x.shape:
            raise ValueError(
                f"perturb(key, x) must return (I, x_perturbed) of x's shape {tuple(x.shape)}, "
                f"got {tuple(noise.shape)} and {tuple(xp.shape)}"
            )
        dot = (a * noise).reshape(n, -1).sum(axis=1)
        return dot, fx - class_scores(model, xp, y, softmax=False)

    p, d = jax.lax.map(one, jax.random.split(key, n_perturb_samples))
    if normalize:
        pp, pd, dd = (p * p).sum(0), (p * d).sum(0), (d * d).sum(0)
        beta = pd / jnp.where(pp != 0, pp, 1)
        return (beta * beta * pp - 2 * beta * pd + dd) / n_perturb_samples
    return ((p - d) ** 2).mean(axis=0)


def sensitivity_max(
    explain: Callable,
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    norm_ord: str | float = "fro",
) -> jax.Array:
    """Captum's max-sensitivity: the largest relative change of the explanation under noise.

    ``max_s ||e(x) - e(x + u_s)|| / ||e(x)||`` with u_s uniform in
    ``[-perturb_radius, perturb_radius]`` on every input value and e the
    explanation (a zero norm counts as 1, as in Captum). Unlike Quantus's
    `max_sensitivity`, Captum explains `x` itself. With
    ``k0, k1 = jax.random.split(key)``, ``e(x) = explain(x, y, k0)`` and sample
    s draws its noise and explanation key from ``jax.random.split(
    jax.random.split(k1, n_perturb_samples)[s])``.

    Differentiable in `explain`'s parameters (through the largest sample).

    Args:
      explain: ``explain(x, y, key) -> map`` (traceable).
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      key: PRNG key of the noise (and of `explain`).
      perturb_radius: half-width of the uniform noise (Captum: 0.02).
      n_perturb_samples: noisy inputs per image (Captum: 10).
      norm_ord: "fro" (Captum's default: the 2-norm of the flattened map) or
        a vector norm order such as 1 or jnp.inf.

    Returns:
      (N,) sensitivities (lower is more robust).

    References:
      Yeh, Hsieh, Suggala, Inouye and Ravikumar. On the (in)fidelity and
      sensitivity of explanations. NeurIPS 2019.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    check_key(key)
    check_positive(n_perturb_samples, "n_perturb_samples")
    order = 2 if norm_ord == "fro" else norm_ord

    def norm(v):
        return jnp.linalg.norm(v.reshape(n, -1), ord=order, axis=1)

    k0, k1 = jax.random.split(key)
    e = explain(x, y, k0)
    size = jnp.where(norm(e) == 0, 1, norm(e))

    def one(k):
        k_noise, k_explain = jax.random.split(k)
        u = jax.random.uniform(k_noise, x.shape, x.dtype, -perturb_radius, perturb_radius)
        return norm(e - explain(x + u, y, k_explain)) / size

    return jax.lax.map(one, jax.random.split(k1, n_perturb_samples)).max(axis=0)
