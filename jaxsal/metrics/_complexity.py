"""Complexity of a map: sparseness (Gini index) and complexity (entropy).

Both read the map alone, every value of it: an (N, H, W, C) map counts all its
C * H * W values, as Quantus flattens whatever it is given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import check_map, prepare

__all__ = ["complexity", "sparseness"]


def sparseness(a: jax.Array, *, abs: bool = True, normalise: bool = True) -> jax.Array:
    """Sparseness: the Gini index of the map's values.

    With the n values sorted ascending and shifted by 1e-7 (Quantus's guard
    against an all-zero map), ``sum_i (2 i - n - 1) a_(i) / (n sum_i a_(i))``:
    0 for a constant map, about (n - 1) / n for a one-hot map.

    Differentiable in `a` (sorting permutes the values; the gradient follows
    the permutation).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      abs: use absolute values (Quantus's default; the index needs
        non-negative values).
      normalise: divide each map by its largest absolute value first
        (Quantus's default; it sets the scale of the 1e-7 shift).

    Returns:
      (N,) indices in [0, 1) (higher is sparser).

    References:
      Chalasani, Chen, Chowdhury, Wu and Jha. Concise explanations of neural
      networks using adversarial training. ICML 2020.
    """
    a = check_map(a)
    n = a.shape[0]
    v = jnp.sort(prepare(a, abs=abs, normalise=normalise).reshape(n, -1) + 1e-7, axis=1)
    m = v.shape[1]
    i = jnp.arange(1, m + 1, dtype=v.dtype)[None, :]
    return ((2 * i - m - 1) * v).sum(axis=1) / (m * v.sum(axis=1))


def complexity(a: jax.Array, *, abs: bool = True, normalise: bool = True) -> jax.Array:
    """Complexity: the entropy of the map's values as shares of their total.

    ``-sum_i p_i log(p_i + 1e-12)`` with ``p_i = a_i / sum_j |a_j|``: 0 for a
    one-hot map, log(n) for a constant one.

    Differentiable in `a` (away from zero values with `abs`).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      abs: use absolute values (Quantus's default).
      normalise: divide each map by its largest absolute value first
        (Quantus's default; the shares do not depend on it).

    Returns:
      (N,) entropies in nats, in [0, log n] (lower is simpler).

    References:
      Bhatt, Weller and Moura. Evaluating and aggregating feature-based model
      explanations. IJCAI 2020.
    """
    a = check_map(a)
    n = a.shape[0]
    v = prepare(a, abs=abs, normalise=normalise).reshape(n, -1)
    p = v / jnp.abs(v).sum(axis=1, keepdims=True)
    return -(p * jnp.log(p + 1e-12)).sum(axis=1)
