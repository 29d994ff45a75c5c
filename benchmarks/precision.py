"""Accuracy of bfloat16 (`ModelParams.with_precision("bfloat16")`) against float32.

Maps are compared by their per-pixel magnitude `sum_c |map|` (N, H, W): the
maximum relative error `max |low - ref| / max |ref|` over the batch, and the
Spearman rank correlation of each image's magnitudes with the float32 ones
(the minimum over the images; images whose float32 map is constant, such as
an all-zero rectified CAM, are left out). The fooling step is compared by
its loss (relative error) and by its gradient with respect to the trained
parameters (relative L2 error over all of them, and `max |diff| / max |ref|`).
"""

from __future__ import annotations

import jax
import numpy as np
import scipy.stats

LOW = "bfloat16"


def magnitude(m) -> np.ndarray:
    """sum_c |map| as float64 (N, H, W); a map without a channel axis is taken as it is."""
    m = np.abs(np.asarray(jax.device_get(m), np.float64))
    return m.sum(axis=-1) if m.ndim == 4 else m


def map_accuracy(ref, low) -> dict:
    """{"max_rel_err", "spearman"} of the map `low` against the float32 map `ref`."""
    a, b = magnitude(ref), magnitude(low)
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes: {a.shape} and {b.shape}")
    scale = np.abs(a).max()
    rel = float(np.abs(b - a).max() / scale) if scale > 0 else float("nan")
    rhos = [
        scipy.stats.spearmanr(ai.ravel(), bi.ravel()).statistic
        for ai, bi in zip(a.reshape(len(a), -1), b.reshape(len(b), -1))
        if np.ptp(ai) > 0
    ]
    return {"max_rel_err": rel, "spearman": float(min(rhos)) if rhos else float("nan")}


def loss_and_grad(loss_fn, params, batch):
    """(loss, gradient w.r.t. `params.params`) of `loss_fn(params, batch, params)` (frozen = params)."""
    run = jax.jit(jax.value_and_grad(lambda p: loss_fn(p, batch, params)[0]))
    loss, grads = run(params)
    return float(loss), grads.params


def fooling_accuracy(loss_fn, params, batch, *, low: str = LOW) -> dict:
    """Loss and parameter gradient of a fooling loss in `low` precision against float32.

    Args:
      loss_fn: `loss_fn(params, batch, frozen) -> (loss, aux)`, e.g.
        `functools.partial(jaxsal.fooling.loss, fooling=...)`.
      params: the float32 model (frozen original = the same model).
      batch: the batch dict.
      low: the precision compared ("bfloat16").

    Returns:
      {"loss", "loss_low", "loss_rel_err", "grad_rel_err", "grad_max_rel_err"}.
    """
    loss, g = loss_and_grad(loss_fn, params.with_precision(None), batch)
    loss_low, g_low = loss_and_grad(loss_fn, params.with_precision(low), batch)
    ref = np.concatenate([np.ravel(a).astype(np.float64) for a in jax.tree.leaves(g)])
    got = np.concatenate([np.ravel(a).astype(np.float64) for a in jax.tree.leaves(g_low)])
    diff = got - ref
    return {
        "loss": loss,
        "loss_low": loss_low,
        "loss_rel_err": abs(loss_low - loss) / abs(loss),
        "grad_rel_err": float(np.linalg.norm(diff) / np.linalg.norm(ref)),
        "grad_max_rel_err": float(np.abs(diff).max() / np.abs(ref).max()),
    }
