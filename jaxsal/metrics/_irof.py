"""IROF: iterative removal of features, superpixel by superpixel.

The superpixels are an input, so the same segmentation can go to jaxsal and to
another implementation, and the metric stays a pure function under
`jax.jit`. Quantus segments with ``skimage.segmentation.slic(image,
start_label=0)`` on the (H, W, C) float64 image; do the same to reproduce it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxsal.metrics._common import (
    baseline_value,
    check_baseline,
    check_images,
    check_labels,
    check_map,
    class_scores,
    features,
    is_traced,
    prepare,
)

__all__ = ["irof"]


def irof(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    segments: jax.Array,
    *,
    num_segments: int | None = None,
    baseline: str | float = "mean",
    abs: bool = False,
    softmax: bool = True,
) -> jax.Array:
    """IROF: area over the curve of the class score as superpixels are removed.

    Superpixels are ranked by their mean attribution (over their pixels and
    channels) and replaced by the baseline one after the other, the baseline
    recomputed from the partly perturbed image at each step ("mean" by
    default, as in Quantus). After each removal the class score is divided by
    the score of `x`; the result is ``n - trapz(curve)`` over the image's n
    superpixels, the area over the curve (higher is more faithful).

    Quantus computes its "mean" baseline over the whole batch it is given and
    pads the curves of a batch to the largest superpixel count, which adds
    half a step for the images with fewer superpixels; jaxsal works per image
    (Quantus with ``batch_size=1``). Quantus 0.6.0 also needs single-channel
    inputs (its mask replacement asserts equal shapes), while jaxsal replaces
    every channel of a superpixel.

    Differentiable in the model's parameters for a fixed ranking, not in `a`.

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      segments: (N, H, W) integer superpixel labels 0 .. n_i - 1 per image
        (e.g. ``skimage.segmentation.slic(img, start_label=0)``).
      num_segments: the largest superpixel count n_i (static; the curve
        length). Read from `segments` when None, which needs concrete
        segments (not under `jax.jit`).
      baseline: "mean" (each image's mean), "black", "white" or a number.
      abs: rank absolute attributions.
      softmax: score with the softmax probability (Quantus's default here).

    Returns:
      (N,) areas over the curve, in [0, n_i] for scores that only fall.

    References:
      Rieger and Hansen. IROF: a low resource evaluation metric for
      explanation methods. ICLR 2020 workshop (arXiv:2003.08747).
    """
    x = check_images(x)
    n, h, w, c = x.shape
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_baseline(baseline)
    segments = jnp.asarray(segments)
    if segments.shape != (n, h, w) or not jnp.issubdtype(segments.dtype, jnp.integer):
        raise ValueError(
            f"segments must be integer superpixel labels of shape ({n}, {h}, {w}), got "
            f"{segments.dtype} {tuple(segments.shape)}; e.g. skimage.segmentation.slic(image, "
            "start_label=0) per image"
        )
    if num_segments is None:
        if is_traced(segments):
            raise ValueError(
                "irof under jax.jit needs the static num_segments= (the largest superpixel "
                "count, e.g. int(segments.max()) + 1 computed outside the jit)"
            )
        num_segments = int(segments.max()) + 1
    elif not is_traced(segments) and int(segments.max()) >= num_segments:
        raise ValueError(
            f"segments has labels up to {int(segments.max())}: num_segments must be at least "
            f"{int(segments.max()) + 1}, got {num_segments}"
        )
    k = num_segments
    labels = segments.reshape(n, -1)
    counts_per_image = labels.max(axis=1) + 1
    att = features(prepare(a, abs=abs, normalise=False), x.shape).sum(axis=-1).reshape(n, -1)

    def segment_means(v, s):
        total = jax.ops.segment_sum(v, s, num_segments=k)
        size = jax.ops.segment_sum(jnp.ones_like(v), s, num_segments=k)
        return jnp.where(size > 0, total / (size * c), -jnp.inf)

    ranking = jnp.argsort(-jax.vmap(segment_means)(att, labels), axis=1, stable=True)
    y_pred = class_scores(model, x, y, softmax=softmax)

    def remove(z, s):
        z = jnp.where((segments == s[:, None, None])[..., None], baseline_value(z, baseline), z)
        return z, class_scores(model, z, y, softmax=softmax) / y_pred

    _, curve = jax.lax.scan(remove, x, ranking.T)
    steps = jnp.arange(k)[None, :]
    last = counts_per_image[:, None] - 1
    # trapezoid weights over each image's own n_i points: 1 inside, 1/2 at both ends
    weights = (steps <= last) * (1.0 - 0.5 * (steps == 0) - 0.5 * (steps == last))
    return counts_per_image - (curve.T * weights).sum(axis=1)
