"""Integrated Gradients along the straight path from a baseline.

Reference:
  Sundararajan et al., Axiomatic attribution for deep networks (2017).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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


@interpreter(static=("steps", "method", "chunk"))
def integrated_gradients(
    params, x, c, *, key=None, baseline=None, steps=50, method="gausslegendre", chunk=None
):
    """(x - baseline) times the path integral of the input gradient.

    Args:
      baseline: array broadcastable to x (default zeros, as in the sanity-checks paper).
      steps: quadrature points (50).
      method: "gausslegendre" (Captum's default) or a Riemann rule
        ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle").
      chunk: quadrature points per pass (None: all at once).

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
