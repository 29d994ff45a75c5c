"""Integrated Gradients along the straight path from a baseline.

Reference:
  Sundararajan et al., Axiomatic attribution for deep networks (2017).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxsal.hyper import check_baseline, check_choice, check_chunk, check_count
from jaxsal.interpreters.base import interpreter
from jaxsal.interpreters.gradient import simple_grad
from jaxsal.interpreters.noise import over_samples

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights of the path integral's quadrature rule."""
    if steps < 2 and method == "riemann_trapezoid":
        raise ValueError("riemann_trapezoid needs steps >= 2")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] *= 0.5
        return np.linspace(0.0, 1.0, steps), w
    offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
    if method not in offsets:
        raise ValueError(f'unknown method "{method}"; choose one of {", ".join(METHODS)}')
    return (np.arange(steps) + offsets[method]) / steps, np.full(steps, 1.0 / steps)


def _validate(name, x, key, hyper):
    """Up-front checks of the quadrature, the baseline and `chunk` (resolved to an int)."""
    check_choice(hyper["method"], "method", name, METHODS)
    minimum = 2 if hyper["method"] == "riemann_trapezoid" else 1
    why = " for riemann_trapezoid" if minimum == 2 else ""
    steps = check_count(hyper["steps"], "steps", name, minimum=minimum, example=50, why=why)
    baseline = check_baseline(hyper["baseline"], x, name)
    chunk = check_chunk(hyper["chunk"], steps, "steps", name, x.shape, x.dtype)
    return key, {**hyper, "steps": steps, "baseline": baseline, "chunk": chunk}


@interpreter(static=("steps", "method", "chunk"), validate=_validate, chunk_of="steps")
def integrated_gradients(
    params, x, c, *, key=None, baseline=None, steps=50, method="gausslegendre", chunk="auto"
):
    """(x - baseline) times the path integral of the input gradient.

    Args:
      baseline: array broadcastable to x (default zeros, as in the sanity-checks paper).
      steps: quadrature points (50).
      method: "gausslegendre" (Captum's default) or a Riemann rule
        ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle").
      chunk: quadrature points per pass: "auto" (default; the largest divisor of
        `steps` with chunk x N images under the budget of
        `jaxsal.hyper.auto_chunk`, 64 float32 images of 224 x 224 x 3), an int
        dividing `steps`, or None (all steps x N images at once). Smaller uses
        less memory; the result does not depend on it.

    Returns:
      Attributions of the shape of x; their sum approximates
      logit_c(x) - logit_c(baseline) (completeness).
    """
    del key
    b = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
    alphas, weights = quadrature(steps, method)
    alphas = jnp.asarray(alphas, x.dtype)[:, None, None, None, None]
    path = b[None] + alphas * (x - b)[None]
    grads = over_samples(lambda p, cp: simple_grad(params, p, cp), path, c, chunk)
    return (x - b) * jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1)
