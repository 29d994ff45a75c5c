"""Per-image test losses and the Fooling Success Rate of Heo et al. (2019).

The FSR of a fooled model is the share of images whose test loss `t_i` lies in
an interval `R_I`: `FSR = mean_i 1[t_i in R_I]`. The test losses are the
penalties of `jaxsal.fooling.penalties` on one image, except for Center-mass
(the shift of the centre of mass normalised by the map's diagonal, in [0, 1])
and Active (Spearman rank correlation between the fooled map of one class and
the original map of the other, averaged over the two swaps). The array
functions are jitted, as they run over whole validation sets.

References:
  Heo, Joo and Moon. Fooling Neural Network Interpretations via Adversarial
  Model Manipulation. NeurIPS 2019, section 4.2 and appendix C.
  https://arxiv.org/abs/1902.02041
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp

from jaxsal.fooling.penalties import (
    center_shift,
    check_pair,
    location_penalty,
    topk_penalty,
)
from jaxsal.metrics import spearman

# R_I as read from the paper (section 4.2); not confirmable from the authors' code.
FSR_INTERVALS: dict[str, tuple[float, float]] = {
    "location": (0.0, 0.2),
    "topk": (0.0, 0.3),
    "center_mass": (0.1, 1.0),
    "active": (0.5, 1.0),
}


def location_test_loss(h: jax.Array, **kwargs) -> jax.Array:
    """Per-image Location test loss: `location_penalty(h, reduction="none", **kwargs)`, (N,)."""
    return location_penalty(h, reduction="none", **kwargs)


@partial(jax.jit, static_argnames="fraction")
def topk_test_loss(h: jax.Array, h_orig: jax.Array, *, fraction: float = 0.1) -> jax.Array:
    """Per-image Top-k test loss: `topk_penalty(..., reduction="none")`, shape (N,)."""
    return topk_penalty(h, h_orig, fraction=fraction, reduction="none")


@jax.jit
def center_mass_score(h: jax.Array, h_orig: jax.Array) -> jax.Array:
    """Per-image Center-mass test loss: the centre shift over the map's diagonal.

    `sqrt(dh^2 + dw^2) / sqrt((H - 1)^2 + (W - 1)^2)`, which is the SPEC's
    `sqrt((dh^2 + dw^2) / 2) / (W - 1)` for square maps (the paper's case) and
    stays in [0, 1] for any map.

    Args:
      h: heatmaps of the fooled model, shape (N, H, W, 1).
      h_orig: heatmaps of the original model, same shape.

    Returns:
      Shape (N,), values in [0, 1].

    References:
      Heo et al. 2019, section 4.2.
    """
    h, h_orig = check_pair(h, h_orig)
    _, height, width, _ = h.shape
    if height < 2 or width < 2:
        raise ValueError(f"center_mass_score needs maps of at least 2x2, got {height}x{width}")
    d = center_shift(h, h_orig)
    diag = ((height - 1) ** 2 + (width - 1) ** 2) ** 0.5
    # sqrt has an infinite derivative at 0; the score is a metric, but keep grads finite.
    sq = (d**2).sum(axis=1)
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0) / diag


@jax.jit
def active_test_loss(
    h_c1: jax.Array, h_c2: jax.Array, h_c1_orig: jax.Array, h_c2_orig: jax.Array
) -> jax.Array:
    """Per-image Active test loss: rank correlation with the swapped original maps.

    `0.5 * [spearman(h_c1, h_c2_orig) + spearman(h_c2, h_c1_orig)]`; the paper
    reports the two swaps separately (FSR for c1 and for c2): call `spearman`
    on one pair for that.

    Args:
      h_c1: fooled model's heatmaps for class c1, shape (N, H, W, 1).
      h_c2: fooled model's heatmaps for class c2, same shape.
      h_c1_orig: original model's heatmaps for class c1, same shape.
      h_c2_orig: original model's heatmaps for class c2, same shape.

    Returns:
      Shape (N,), values in [-1, 1]; 1 for a perfect swap.

    References:
      Heo et al. 2019, section 4.2.
    """
    h_c1, h_c2_orig = check_pair(h_c1, h_c2_orig, ("h_c1", "h_c2_orig"))
    h_c2, h_c1_orig = check_pair(h_c2, h_c1_orig, ("h_c2", "h_c1_orig"))
    return 0.5 * (spearman(h_c1, h_c2_orig) + spearman(h_c2, h_c1_orig))


def mass_in_boxes(h: jax.Array, boxes: jax.Array, input_size: tuple[int, int]) -> jax.Array:
    """Share of each map's non-negative mass inside the union of its boxes, (N,).

    Args:
      h: heatmaps (N, h, w, 1) at any resolution that tiles the input.
      boxes: (N, 4) or (N, B, 4) half-open boxes in input pixels.
      input_size: (H, W) of the input.

    Returns:
      sum(relu(h) * coverage) / sum(relu(h)), 0 for an all-zero map.
    """
    from jaxsal.metrics import box_coverage

    m = jax.nn.relu(jnp.asarray(h)[..., 0])
    cover = box_coverage(boxes, input_size, m.shape[1:3]).astype(m.dtype)
    total = m.sum(axis=(1, 2))
    inside = (m * cover).sum(axis=(1, 2))
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1.0), 0.0)


def active_swap_score(
    h: jax.Array, own_boxes: jax.Array, other_boxes: jax.Array, input_size: tuple[int, int]
) -> jax.Array:
    """Box-based Active test: how much of a class's map sits on the OTHER class's objects.

    `mass_in_boxes(h, other) - mass_in_boxes(h, own)` per image, in [-1, 1]:
    negative when the map of class c1 points at the c1 digits (an honest map),
    positive when it points at the c2 digits (the swap Active fooling aims for).
    Unlike the rank correlation of whole maps it does not depend on the
    background cells where both maps are zero.

    Args:
      h: the maps of one class, (N, h, w, 1).
      own_boxes: (N, B, 4) boxes of that class's objects.
      other_boxes: (N, B, 4) boxes of the other class's objects.
      input_size: (H, W) of the input.

    Returns:
      (N,) scores in [-1, 1].
    """
    return mass_in_boxes(h, other_boxes, input_size) - mass_in_boxes(h, own_boxes, input_size)


def fooling_success_rate(losses: jax.Array, interval: str | Sequence[float]) -> jax.Array:
    """Fooling Success Rate: share of test losses inside the closed interval R_I.

    NaN losses (e.g. the rank correlation of a constant map) count as failures.

    Args:
      losses: per-image test losses, any shape.
      interval: (low, high), or a fooling name from `FSR_INTERVALS`
        ("location", "topk", "center_mass", "active").

    Returns:
      A scalar in [0, 1].

    References:
      Heo et al. 2019, eq. (6).
    """
    if isinstance(interval, str):
        if interval not in FSR_INTERVALS:
            raise ValueError(
                f'unknown fooling "{interval}" for the FSR interval; use one of '
                f"{', '.join(FSR_INTERVALS)} or pass (low, high)"
            )
        interval = FSR_INTERVALS[interval]
    if len(interval) != 2 or not interval[0] <= interval[1]:
        raise ValueError(f"interval must be (low, high) with low <= high, got {interval}")
    t = jnp.asarray(losses)
    if t.size == 0:
        raise ValueError("fooling_success_rate needs at least one test loss, got none")
    lo, hi = interval
    return ((t >= lo) & (t <= hi)).mean()
