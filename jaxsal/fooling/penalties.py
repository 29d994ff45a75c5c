"""Fooling penalties `L_F` of Heo et al. (2019), SPEC section 1.

Each penalty takes heatmaps of the model being fine-tuned (`h`, with
gradient) and, where needed, of the frozen original model (`h_orig`, wrapped
in `stop_gradient`). Heatmaps are NHWC batches reduced to one channel,
`(N, h, w, 1)`, e.g. from `jaxsal.postprocess.gradcam_heatmap` or
`lrp_t_heatmap`. All functions are pure, jittable and differentiable in `h`;
with `reduction="none"` they give the per-image values that the Fooling
Success Rate uses as test losses (`jaxsal.fooling.metrics`).

References:
  Heo, Joo and Moon. Fooling Neural Network Interpretations via Adversarial
  Model Manipulation. NeurIPS 2019. https://arxiv.org/abs/1902.02041
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.postprocess import EPS, normalize

_REDUCTIONS = ("mean", "none")


def check_heatmap(h, name: str = "h") -> jax.Array:
    """`h` must be an NHWC heatmap batch with one channel: shape (N, h, w, 1)."""
    shape = tuple(np.shape(h))
    if len(shape) != 4 or shape[-1] != 1:
        hint = ""
        if len(shape) == 4:
            hint = " Reduce the channels first with jaxsal.postprocess.reduce_channels(h)."
        elif len(shape) == 3:
            hint = " Add the channel axis with h[..., None]."
        raise ValueError(
            f"{name} must be a heatmap batch of shape (N, h, w, 1), got {shape}.{hint}"
        )
    h = jnp.asarray(h)
    if not jnp.issubdtype(h.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got {h.dtype}")
    return h


def check_pair(h, h_orig, names=("h", "h_orig")):
    """Checks two heatmap batches of the same shape; returns them as arrays."""
    h, h_orig = check_heatmap(h, names[0]), check_heatmap(h_orig, names[1])
    if h.shape != h_orig.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {h.shape} and "
            f"{h_orig.shape}; compute both maps at the same layer and batch"
        )
    return h, h_orig


def _reduce(per_image: jax.Array, reduction: str) -> jax.Array:
    if reduction not in _REDUCTIONS:
        raise ValueError(f'unknown reduction "{reduction}"; use "mean" or "none"')
    return per_image.mean() if reduction == "mean" else per_image


def _mean_hw(a: jax.Array) -> jax.Array:
    return a.mean(axis=(1, 2, 3))


def location_mask(
    height: int, width: int, *, border: int | None = None, centre: float = 0.0
) -> np.ndarray:
    """The Location fooling's target map: 1 on a frame, `centre` inside.

    Args:
      height: heatmap height H.
      width: heatmap width W.
      border: frame width k; the paper's `H // 7` when None. The same k is used
        on both axes, as in the authors' code.
      centre: value inside the frame: 0 for target-layer maps, -1 for the
        input-level LRP variant.

    Returns:
      A float64 NumPy array of shape (H, W): `m[k:-k, k:-k] = centre`, 1 elsewhere.

    References:
      Heo et al. 2019, appendix B, remark 1.
    """
    k = height // 7 if border is None else int(border)
    if k < 1 or 2 * k >= min(height, width):
        raise ValueError(
            f"location mask needs a frame width k with 1 <= k < min(H, W) / 2, got k = {k} "
            f"for a {height}x{width} map (k defaults to H // 7, so H >= 7); pass border="
        )
    m = np.ones((height, width))
    m[k:-k, k:-k] = centre
    return m


def location_penalty(
    h: jax.Array,
    *,
    input_lrp: bool = False,
    border: int | None = None,
    reduction: str = "mean",
) -> jax.Array:
    """Location fooling: squared distance of the heatmap to a frame mask.

    `L_F = mean_pixels (m - h)^2` per image, averaged over the batch, with `m`
    from `location_mask`. The input-level LRP variant (`input_lrp=True`) sets
    the centre of the mask to -1 and divides `h` by its maximum over the whole
    batch (so per-image values then depend on the batch, as in the authors'
    code).

    Args:
      h: heatmaps of the fooled model, shape (N, H, W, 1).
      input_lrp: use the input-level LRP variant.
      border: frame width; `H // 7` when None.
      reduction: "mean" (over the batch) or "none" (one value per image).

    Returns:
      A scalar, or shape (N,) with `reduction="none"`.

    References:
      Heo et al. 2019, eq. (3) and appendix B.
    """
    h = check_heatmap(h)
    _, height, width, _ = h.shape
    m = location_mask(height, width, border=border, centre=-1.0 if input_lrp else 0.0)
    m = jnp.asarray(m, h.dtype).reshape(1, height, width, 1)
    if input_lrp:
        h = h / h.max()
    return _reduce(_mean_hw((m - h) ** 2), reduction)


def topk_count(height: int, width: int, fraction: float) -> int:
    """k = floor(fraction * H * W), the paper's `H*W // 10` for fraction 0.1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = int(height * width * fraction + 1e-9)
    if k < 1:
        raise ValueError(
            f"top-k with fraction {fraction} selects no pixel of a {height}x{width} map; "
            "raise fraction or use a larger map"
        )
    return k


def topk_penalty(
    h: jax.Array, h_orig: jax.Array, *, fraction: float = 0.1, reduction: str = "mean"
) -> jax.Array:
    """Top-k fooling: the fooled map's mass on the original map's top pixels.

    The k = `fraction * H * W` pixels with the highest values of
    `normalize(h_orig)` (no gradient; ties go to the lower flat index) index
    `normalize(h)`; the penalty is the mean of its squares there.

    Args:
      h: heatmaps of the fooled model, shape (N, H, W, 1).
      h_orig: heatmaps of the original model, same shape.
      fraction: share of pixels in the top set (the paper's 10%).
      reduction: "mean" (over the batch) or "none" (one value per image).

    Returns:
      A scalar, or shape (N,) with `reduction="none"`.

    References:
      Heo et al. 2019, eq. (4).
    """
    h, h_orig = check_pair(h, h_orig)
    n, height, width, _ = h.shape
    k = topk_count(height, width, fraction)
    ref = jax.lax.stop_gradient(normalize(h_orig)).reshape(n, -1)
    _, idx = jax.lax.top_k(ref, k)
    picked = jnp.take_along_axis(normalize(h).reshape(n, -1), idx, axis=1)
    return _reduce((picked**2).mean(axis=1), reduction)


def center_of_mass(h: jax.Array) -> jax.Array:
    """Centre of mass of each normalised heatmap, in 1-based pixel coordinates.

    Rows are weighted by `1..H` and columns by `1..W` over `normalize(h)`,
    divided by the map's total mass + 1e-8.

    Args:
      h: heatmaps, shape (N, H, W, 1).

    Returns:
      Shape (N, 2): (row, column) of each centre.

    References:
      Heo et al. 2019, section 3.2.1 (Center-mass fooling).
    """
    h = normalize(check_heatmap(h))
    _, height, width, _ = h.shape
    total = h.sum(axis=(1, 2, 3)) + EPS
    rows = jnp.arange(1, height + 1, dtype=h.dtype).reshape(1, height)
    cols = jnp.arange(1, width + 1, dtype=h.dtype).reshape(1, width)
    r = (h.sum(axis=(2, 3)) * rows).sum(axis=1) / total
    c = (h.sum(axis=(1, 3)) * cols).sum(axis=1) / total
    return jnp.stack([r, c], axis=1)


def center_shift(h: jax.Array, h_orig: jax.Array) -> jax.Array:
    """(dh, dw) between the centres of mass of `h` and of `h_orig` (no gradient), shape (N, 2)."""
    h, h_orig = check_pair(h, h_orig)
    return center_of_mass(h) - jax.lax.stop_gradient(center_of_mass(h_orig))


def center_mass_penalty(h: jax.Array, h_orig: jax.Array, *, reduction: str = "mean") -> jax.Array:
    """Center-mass fooling: minus the L1 shift of the centre of mass.

    `L_F = -mean_i (|dh_i| + |dw_i|)`, minimised to push the fooled map's
    centre away from the original one.

    Args:
      h: heatmaps of the fooled model, shape (N, H, W, 1).
      h_orig: heatmaps of the original model, same shape.
      reduction: "mean" (over the batch) or "none" (one value per image).

    Returns:
      A scalar, or shape (N,) with `reduction="none"`.

    References:
      Heo et al. 2019, eq. (5).
    """
    return _reduce(-jnp.abs(center_shift(h, h_orig)).sum(axis=1), reduction)


def active_penalty(
    h_c1: jax.Array,
    h_c2: jax.Array,
    h_c1_orig: jax.Array,
    h_c2_orig: jax.Array,
    *,
    reduction: str = "mean",
) -> jax.Array:
    """Active fooling: swap the explanations of two classes.

    `L_F = 0.5 * [MSE(h_c1, h_c2_orig) + MSE(h_c2, h_c1_orig)]`, the maps of
    the fooled model for classes c1 and c2 pulled towards the original model's
    maps for the other class (originals without gradient).

    Args:
      h_c1: fooled model's heatmaps for class c1, shape (N, H, W, 1).
      h_c2: fooled model's heatmaps for class c2, same shape.
      h_c1_orig: original model's heatmaps for class c1, same shape.
      h_c2_orig: original model's heatmaps for class c2, same shape.
      reduction: "mean" (over the batch) or "none" (one value per image).

    Returns:
      A scalar, or shape (N,) with `reduction="none"`.

    References:
      Heo et al. 2019, section 3.2.2 (Active fooling).
    """
    h_c1, h_c2_orig = check_pair(h_c1, h_c2_orig, ("h_c1", "h_c2_orig"))
    h_c2, h_c1_orig = check_pair(h_c2, h_c1_orig, ("h_c2", "h_c1_orig"))
    check_pair(h_c1, h_c2, ("h_c1", "h_c2"))
    sg = jax.lax.stop_gradient
    per_image = 0.5 * (
        _mean_hw((h_c1 - sg(h_c2_orig)) ** 2) + _mean_hw((h_c2 - sg(h_c1_orig)) ** 2)
    )
    return _reduce(per_image, reduction)


def logit_floor_penalty(
    logits: jax.Array, logits_orig: jax.Array, *, reduction: str = "mean"
) -> jax.Array:
    """How far the fooled model's logits fell below the original's: `mean relu(z0 - z)^2`.

    Not in Heo et al.: an optional term of Active fooling (`Fooling.keep_logits`)
    on the composites' logits of the two swapped classes. LRP's relevance
    starts at the logit, so a model that drives both logits negative on the
    composites makes the relu'd LRP_T maps vanish, which halves the swap
    penalty without swapping anything (a degenerate minimum); this term closes
    that route and leaves logits free to rise.

    Args:
      logits: fooled model's logits, shape (N, K) (e.g. the K = 2 swapped classes).
      logits_orig: the original model's logits, same shape (no gradient).
      reduction: "mean" (over the batch) or "none" (one value per image).

    Returns:
      A scalar, or shape (N,) with `reduction="none"`.
    """
    logits, logits_orig = jnp.asarray(logits), jnp.asarray(logits_orig)
    if logits.ndim != 2 or logits.shape != logits_orig.shape:
        raise ValueError(
            "logits and logits_orig must both have shape (N, K), got "
            f"{logits.shape} and {logits_orig.shape}"
        )
    drop = jax.nn.relu(jax.lax.stop_gradient(logits_orig) - logits)
    return _reduce((drop**2).mean(axis=1), reduction)
