"""Rank statistics: average ranks and Spearman's rank correlation, per sample.

`rankdata` matches `scipy.stats.rankdata(method="average")` and `spearman` is
the Pearson correlation of those ranks, as `scipy.stats.spearmanr` computes it
(and Quantus's `correlation_spearman`, the default similarity of its model
parameter randomisation test). Both sort, so neither is differentiable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["rankdata", "spearman"]


@jax.jit
def rankdata(a: jax.Array) -> jax.Array:
    """Ranks 1..n along the last axis, tied values sharing their average rank.

    Matches `scipy.stats.rankdata(a, method="average", axis=-1)` for finite
    input; O(n log n) (a sort and two binary searches), so it suits
    224x224 input-level maps.

    Args:
      a: any array; ranked along its last axis.

    Returns:
      Float ranks of the same shape.
    """
    a = jnp.asarray(a)
    dtype = jnp.result_type(a.dtype, jnp.float32)
    flat = a.reshape(-1, a.shape[-1])

    def one(v):
        s = jnp.sort(v)
        below = jnp.searchsorted(s, v, side="left")
        upto = jnp.searchsorted(s, v, side="right")
        return (below + upto + 1).astype(dtype) / 2

    return jax.vmap(one)(flat).reshape(a.shape)


@jax.jit
def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation per sample: Pearson correlation of average ranks.

    Each sample's values (all axes but the first) are flattened. A constant
    sample gives NaN, as `scipy.stats.spearmanr` does.

    Args:
      a: shape (N, ...).
      b: same shape as `a`.

    Returns:
      Shape (N,), values in [-1, 1].

    References:
      Spearman, The proof and measurement of association between two things,
      1904; Heo et al. 2019, section 4.2 (Active fooling test loss).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"spearman needs two batches of the same shape (N, ...), got {a.shape} and {b.shape}"
        )
    n = a.shape[0]
    # Average ranks always have mean (m + 1) / 2: subtracting it exactly keeps a
    # constant sample at 0 / 0 = NaN instead of rounding noise.
    mid = (a[0].size + 1) / 2
    ra = rankdata(a.reshape(n, -1)) - mid
    rb = rankdata(b.reshape(n, -1)) - mid
    return (ra * rb).sum(axis=1) / jnp.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
