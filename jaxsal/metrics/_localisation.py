"""Localisation: does the map's relevance fall on the ground-truth object?

Every metric takes the maps and a boolean ground-truth mask per image (N, H, W)
(`box_mask` turns boxes into masks). A map with channels (N, H, W, C) is summed
over them first, as `quantus.explain` does by default (Quantus itself needs a
map of the mask's shape). No model is involved. An empty mask gives NaN.
Quantus's `normalise` does not change these scores (ratios and rankings),
except in `attribution_localisation`, which adds 1e-9 to a sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import check_map, check_mask, pixel_map, prepare

__all__ = [
    "attribution_localisation",
    "box_coverage",
    "box_mask",
    "pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
]


def box_mask(boxes: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Boolean masks of boxes: the pixels inside any of an image's boxes.

    Args:
      boxes: (N, 4) or (N, B, 4) integer boxes ``(y0, x0, y1, x1)``, half-open
        (rows y0 .. y1 - 1, columns x0 .. x1 - 1), as `jaxsal.data` yields
        them. An empty box (y1 <= y0) adds nothing, so (N, B, 4) can be padded.
      shape: (H, W) of the masks.

    Returns:
      (N, H, W) booleans.
    """
    boxes = jnp.asarray(boxes)
    if boxes.ndim == 2:
        boxes = boxes[:, None]
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must have shape (N, 4) or (N, B, 4) as (y0, x0, y1, x1), got {boxes.shape}"
        )
    if len(shape) != 2:
        raise ValueError(f"shape must be the masks' (H, W), got {shape}")
    rows = jnp.arange(shape[0])[None, None, :, None]
    cols = jnp.arange(shape[1])[None, None, None, :]
    y0, x0, y1, x1 = (boxes[..., i][..., None, None] for i in range(4))
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return inside.any(axis=1)


def box_coverage(boxes: jax.Array, input_size: tuple[int, int], size: tuple[int, int]):
    """The share of each cell of an (h, w) map covered by an image's boxes (their union).

    The map's cells tile the input: H and W must be multiples of h and w (e.g.
    a 12x12 Grad-CAM map of a 96x96 scene: 8x8-pixel cells).

    Args:
      boxes: (N, 4) or (N, B, 4) half-open boxes (y0, x0, y1, x1) in input pixels.
      input_size: (H, W) of the input.
      size: (h, w) of the map.

    Returns:
      (N, h, w) in [0, 1]: 1 inside the boxes, fractions on their border cells.
    """
    (hi, wi), (h, w) = input_size, size
    if hi % h or wi % w:
        raise ValueError(f"input size {input_size} must be a multiple of the map size {size}")
    mask = box_mask(boxes, (hi, wi)).astype(jnp.result_type(float))
    return mask.reshape(-1, h, hi // h, w, wi // w).mean(axis=(2, 4))


def _flat(a, mask, *, abs, normalise=False):
    a = check_map(a)
    s = check_mask(mask, a.shape)
    n = a.shape[0]
    a = prepare(pixel_map(a), abs=abs, normalise=normalise)
    return a.reshape(n, -1), s.reshape(n, -1)


def _nan_if_empty(value, s):
    return jnp.where(s.any(axis=1), value, jnp.nan)


def pointing_game(
    a: jax.Array, mask: jax.Array, *, weighted: bool = False, abs: bool = False
) -> jax.Array:
    """Pointing game: is (one of) the map's maximum inside the mask?

    A hit is 1, a miss 0. `weighted` scales a hit by ``1 - |mask| / (H W)``
    (a hit on a small object counts more). Quantus returns booleans, so its
    weighting and its NaN for an empty mask turn into True there.

    Not differentiable (argmax).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      mask: (N, H, W) booleans, the object.
      weighted: weight hits by the share of the image outside the object.
      abs: use absolute attributions.

    Returns:
      (N,) floats in {0, 1} (or the weights), NaN for an empty mask.

    References:
      Zhang, Bargal, Lin, Brandt, Shen and Sclaroff. Top-down neural attention
      by excitation backprop. IJCV 2018.
    """
    a, s = _flat(a, mask, abs=abs)
    peak = a == a.max(axis=1, keepdims=True)
    hit = (s & peak).any(axis=1).astype(a.dtype)
    if weighted:
        hit = hit * (1 - s.sum(axis=1) / s.shape[1])
    return _nan_if_empty(hit, s)


def relevance_mass_accuracy(a: jax.Array, mask: jax.Array, *, abs: bool = False) -> jax.Array:
    """Relevance mass accuracy: the share of the map's total relevance inside the mask.

    ``sum(a inside) / sum(a)``: 1 for a map entirely inside the object.

    Differentiable in `a`.

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      mask: (N, H, W) booleans, the object.
      abs: use absolute attributions.

    Returns:
      (N,) ratios (in [0, 1] for non-negative maps), NaN for an empty mask.

    References:
      Arras, Osman and Samek. CLEVR-XAI: A benchmark dataset for the ground
      truth evaluation of neural network explanations. Information Fusion 2022.
    """
    a, s = _flat(a, mask, abs=abs)
    return _nan_if_empty(jnp.where(s, a, 0).sum(axis=1) / a.sum(axis=1), s)


def _descending_position(a):
    """Each value's position in its row sorted by descending value (ties by position)."""
    return jnp.argsort(jnp.argsort(-a, axis=1, stable=True), axis=1)


def relevance_rank_accuracy(a: jax.Array, mask: jax.Array, *, abs: bool = False) -> jax.Array:
    """Relevance rank accuracy: the share of the K most relevant pixels inside the mask.

    K is the mask's pixel count, so a map whose K largest values cover the
    object exactly scores 1.

    Not differentiable (ranking).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      mask: (N, H, W) booleans, the object.
      abs: use absolute attributions.

    Returns:
      (N,) shares in [0, 1], NaN for an empty mask.

    References:
      Arras, Osman and Samek. CLEVR-XAI: A benchmark dataset for the ground
      truth evaluation of neural network explanations. Information Fusion 2022.
    """
    a, s = _flat(a, mask, abs=abs)
    k = s.sum(axis=1, keepdims=True)
    hits = (s & (_descending_position(a) < k)).sum(axis=1)
    return _nan_if_empty(hits / k[:, 0], s)


def top_k_intersection(
    a: jax.Array,
    mask: jax.Array,
    *,
    k: int = 1000,
    concept_influence: bool = False,
    abs: bool = False,
) -> jax.Array:
    """Top-k intersection: the share of the k most relevant pixels inside the mask.

    With `concept_influence` the share is divided by the object's share of
    the image, ``|mask| / (H W)``. A k beyond the pixel count takes all pixels
    (as Quantus's slicing does).

    Not differentiable (ranking).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      mask: (N, H, W) booleans, the object.
      k: pixels taken (Quantus: 1000, for 224x224 images).
      concept_influence: normalise by the object's size.
      abs: use absolute attributions.

    Returns:
      (N,) shares in [0, 1] (or ratios), NaN for an empty mask.

    References:
      Theiner, Müller-Budack and Ewerth. Interpretable semantic photo
      geolocation. WACV 2022.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    a, s = _flat(a, mask, abs=abs)
    top = min(k, a.shape[1])
    score = (s & (_descending_position(a) < top)).sum(axis=1) / top
    if concept_influence:
        score = score * s.shape[1] / s.sum(axis=1)
    return _nan_if_empty(score, s)


def attribution_localisation(
    a: jax.Array,
    mask: jax.Array,
    *,
    weighted: bool = False,
    positive_attributions: bool = False,
    abs: bool = True,
    normalise: bool = True,
) -> jax.Array:
    """Attribution localisation: relevance inside the mask over the total (plus 1e-9).

    ``sum(a inside) / (sum(a) + 1e-9)``, NaN where that exceeds 1 (Quantus's
    check for maps with negative values), times ``|mask| / (H W)`` when
    `weighted`. Quantus's weight divides by the size of ``x_batch[2:]``
    (the batch from its third image on), a slip; this one uses the image's
    pixel count. Quantus's `max_size` only warns, so there is none.

    Differentiable in `a` (away from zero with `abs`).

    Args:
      a: (N, H, W) or (N, H, W, C) maps.
      mask: (N, H, W) booleans, the object.
      weighted: weight by the object's share of the image.
      positive_attributions: clip negative attributions to 0 (after `abs`
        and `normalise`).
      abs: use absolute attributions (Quantus's default here).
      normalise: divide each map by its largest absolute value first
        (Quantus's default).

    Returns:
      (N,) ratios in [0, 1], NaN for an empty mask or a ratio above 1.

    References:
      Kohlbrenner, Bauer, Nakajima, Binder, Samek and Lapuschkin. Towards best
      practice in explaining neural network decisions with LRP. IJCNN 2020.
    """
    a, s = _flat(a, mask, abs=abs, normalise=normalise)
    if positive_attributions:
        a = jnp.clip(a, 0, None)
    ratio = jnp.where(s, a, 0).sum(axis=1) / (a.sum(axis=1) + 1e-9)
    ratio = jnp.where(ratio > 1, jnp.nan, ratio)
    if weighted:
        ratio = ratio * s.sum(axis=1) / s.shape[1]
    return _nan_if_empty(ratio, s)
