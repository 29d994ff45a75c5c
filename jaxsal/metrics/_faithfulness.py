"""Faithfulness by removing features: faithfulness correlation, pixel flipping, region perturbation.

Each metric removes the input features that the map ranks (or a random
subset) and watches the class score of the model. Features are the values of
the NHWC input; an (N, H, W) map is broadcast over the channels (see
`jaxsal.metrics`). Rankings sort by descending attribution with ties broken
by position (a stable sort); Quantus sorts with NumPy's unstable quicksort,
so the two agree wherever the attributions differ.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.metrics._common import (
    baseline_value,
    check_baseline,
    check_images,
    check_key,
    check_labels,
    check_map,
    check_positive,
    class_scores,
    features,
    pearson,
    prepare,
)

__all__ = ["faithfulness_correlation", "pixel_flipping", "region_perturbation"]


def faithfulness_correlation(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    key: jax.Array,
    nr_runs: int = 100,
    subset_size: int = 224,
    baseline: str | float = "black",
    abs: bool = False,
    softmax: bool = False,
) -> jax.Array:
    """Faithfulness correlation: attribution of random subsets against the score they carry.

    Each of `nr_runs` runs replaces a random subset of `subset_size` input
    features (values of the NHWC input) by the baseline; the score is the
    Pearson correlation, over the runs, between the subset's summed
    attribution and the drop of the class score.

    Run r of image i removes the flat NHWC feature indices
    ``jax.random.choice(jax.random.split(key, (nr_runs, N))[r, i], H * W * C,
    (subset_size,), replace=False)``. Quantus draws them with
    ``np.random.choice`` over NCHW indices; its `normalise` option has no
    effect on a Pearson correlation, so there is none here.

    Differentiable in `a` and in the model's parameters (the subsets are
    fixed by `key`).

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      key: PRNG key of the random subsets.
      nr_runs: number of random subsets per image (Quantus: 100).
      subset_size: features per subset (Quantus: 224).
      baseline: "black" (each image's minimum), "white", "mean" or a number.
      abs: take absolute attributions first.
      softmax: score with the softmax probability instead of the logit.

    Returns:
      (N,) correlations in [-1, 1] (higher is more faithful).

    References:
      Bhatt, Weller and Moura. Evaluating and aggregating feature-based model
      explanations. IJCAI 2020.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_key(key)
    check_baseline(baseline)
    check_positive(nr_runs, "nr_runs")
    f = features(prepare(a, abs=abs, normalise=False), x.shape).reshape(n, -1)
    num = f.shape[1]
    if not isinstance(subset_size, int) or not 0 < subset_size <= num:
        raise ValueError(
            f"subset_size must be an int in 1..{num} (the features H*W*C), got {subset_size!r}"
        )
    xf = x.reshape(n, -1)
    rows = jnp.arange(n)[:, None]
    fill = jnp.broadcast_to(baseline_value(xf, baseline), (n, subset_size))
    y_pred = class_scores(model, x, y, softmax=softmax)

    def run(keys):
        idx = jax.vmap(lambda k: jax.random.choice(k, num, (subset_size,), replace=False))(keys)
        xp = xf.at[rows, idx].set(fill).reshape(x.shape)
        return f[rows, idx].sum(axis=1), y_pred - class_scores(model, xp, y, softmax=softmax)

    att, drop = jax.lax.map(run, jax.random.split(key, (nr_runs, n)))
    return pearson(att.T, drop.T)


def pixel_flipping(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    features_in_step: int = 1,
    baseline: str | float = "black",
    abs: bool = False,
    softmax: bool = True,
) -> jax.Array:
    """Pixel flipping: the class score as features are removed, most relevant first.

    Step k replaces the next `features_in_step` features of the ranking by the
    baseline, cumulatively, and records the class score. The baseline is
    recomputed from the partly flipped image at every step, as in Quantus
    (this matters for "mean" only). Summarise a curve with
    `jaxsal.metrics.auc` (Quantus's ``return_auc_per_sample``). With an
    (N, H, W) map every pixel's C channel values tie; a `features_in_step`
    that is a multiple of C flips whole pixels.

    Differentiable in the model's parameters and in `x` for a fixed ranking,
    not in `a` (the ranking is a sort).

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      features_in_step: features flipped per step; must divide H*W*C.
      baseline: "black" (each image's minimum), "white", "mean" or a number.
      abs: rank absolute attributions.
      softmax: score with the softmax probability (Quantus's default here)
        instead of the logit.

    Returns:
      (N, H*W*C / features_in_step) class scores after each step.

    References:
      Bach, Binder, Montavon, Klauschen, Müller and Samek. On pixel-wise
      explanations for non-linear classifier decisions by layer-wise relevance
      propagation. PLoS ONE 2015.
    """
    x = check_images(x)
    n = x.shape[0]
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_baseline(baseline)
    step = check_positive(features_in_step, "features_in_step")
    f = features(prepare(a, abs=abs, normalise=False), x.shape).reshape(n, -1)
    num = f.shape[1]
    if num % step:
        raise ValueError(
            f"features_in_step={step} must divide the {num} features (H*W*C) of each image"
        )
    order = jnp.argsort(-f, axis=1, stable=True).reshape(n, num // step, step)
    rows = jnp.arange(n)[:, None]

    def flip(xf, idx):
        xf = xf.at[rows, idx].set(jnp.broadcast_to(baseline_value(xf, baseline), idx.shape))
        return xf, class_scores(model, xf.reshape(x.shape), y, softmax=softmax)

    _, curve = jax.lax.scan(flip, x.reshape(n, -1), jnp.swapaxes(order, 0, 1))
    return curve.T


def _padding(size: int, patch: int) -> tuple[int, int]:
    """Quantus's split of the padding to a multiple of the patch size (floor, ceil)."""
    total = -size % patch
    return total // 2, total - total // 2


def region_perturbation(
    model: Callable,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    *,
    patch_size: int = 8,
    order: str = "morf",
    regions_evaluation: int = 100,
    baseline: str | float = "black",
    mode: str = "deletion",
    abs: bool = False,
    softmax: bool = True,
    key: jax.Array | None = None,
) -> jax.Array:
    """Region perturbation: the class score as square regions are removed (or inserted).

    The image is padded to a multiple of `patch_size` (split floor / ceil;
    edge values for the image, zeros for the map) and cut into
    non-overlapping patches, ranked by their summed attribution (over
    channels and pixels). "deletion" (Quantus's RegionPerturbation) replaces
    the first `regions_evaluation` patches by the baseline one after the
    other, the baseline recomputed from the padded, partly perturbed image,
    and records the drop ``f(x) - f(x_k)``. "insertion" starts from the
    baseline image (each image's baseline value everywhere) and puts the
    patches of `x` back in the same order, recording the gain
    ``f(x_k) - f(x_0)``. For MoRF both curves rise fast for a faithful map;
    summarise them with `jaxsal.metrics.auc` (AOPC is the AUC over the
    number of steps).

    Differentiable in the model's parameters for a fixed ranking, not in `a`.

    Args:
      model: ``model(x) -> logits (N, classes)`` on an NHWC batch.
      x: (N, H, W, C) inputs.
      y: (N,) classes explained.
      a: (N, H, W) or (N, H, W, C) attributions.
      patch_size: side of the square patches (Quantus: 8).
      order: "morf" (most relevant first), "lerf" (least relevant first) or
        "random" (needs `key`; image i uses
        ``jax.random.permutation(jax.random.split(key, N)[i], num_patches)``).
      regions_evaluation: number of patches removed (at most all of them).
      baseline: "black" (each image's minimum), "white", "mean" or a number.
      mode: "deletion" or "insertion".
      abs: rank absolute attributions.
      softmax: score with the softmax probability (Quantus's default here).
      key: PRNG key, for ``order="random"`` only.

    Returns:
      (N, min(regions_evaluation, num_patches)) curves.

    References:
      Samek, Binder, Montavon, Lapuschkin and Müller. Evaluating the
      visualization of what a deep neural network has learned. IEEE TNNLS 2017.
      Petsiuk, Das and Saenko. RISE: Randomized input sampling for explanation
      of black-box models. BMVC 2018 (insertion).
    """
    x = check_images(x)
    n, h, w, c = x.shape
    y = check_labels(y, n)
    a = check_map(a, x.shape)
    check_baseline(baseline)
    p = check_positive(patch_size, "patch_size")
    check_positive(regions_evaluation, "regions_evaluation")
    if mode not in ("deletion", "insertion"):
        raise ValueError(f'mode must be "deletion" or "insertion", got "{mode}"')
    if order not in ("morf", "lerf", "random"):
        raise ValueError(f'order must be "morf", "lerf" or "random", got "{order}"')
    if p > min(h, w):
        raise ValueError(f"patch_size={p} exceeds the image side {min(h, w)}")
    ph, pw = _padding(h, p), _padding(w, p)
    pad = ((0, 0), ph, pw, (0, 0))
    x_pad = jnp.pad(x, pad, mode="edge")
    a_pad = jnp.pad(features(prepare(a, abs=abs, normalise=False), x.shape), pad)
    bh, bw = x_pad.shape[1] // p, x_pad.shape[2] // p
    sums = a_pad.reshape(n, bh, p, bw, p, c).sum(axis=(2, 4, 5)).reshape(n, bh * bw)
    if order == "morf":
        ranking = jnp.argsort(-sums, axis=1, stable=True)
    elif order == "lerf":
        ranking = jnp.argsort(sums, axis=1, stable=True)
    else:
        keys = jax.random.split(check_key(key), n)
        ranking = jax.vmap(lambda k: jax.random.permutation(k, bh * bw))(keys)
    ranking = ranking[:, : min(regions_evaluation, bh * bw)]
    block = np.arange(bh * bw).reshape(bh, bw).repeat(p, axis=0).repeat(p, axis=1)

    def score(z):
        return class_scores(model, z[:, ph[0] : ph[0] + h, pw[0] : pw[0] + w], y, softmax=softmax)

    def region(r):
        return (block[None] == r[:, None, None])[..., None]

    if mode == "deletion":

        def remove(z, r):
            z = jnp.where(region(r), baseline_value(z, baseline), z)
            return z, score(z)

        _, s = jax.lax.scan(remove, x_pad, ranking.T)
        return score(x_pad)[:, None] - s.T

    start = jnp.broadcast_to(baseline_value(x_pad, baseline), x_pad.shape)

    def insert(z, r):
        z = jnp.where(region(r), x_pad, z)
        return z, score(z)

    _, s = jax.lax.scan(insert, start, ranking.T)
    return s.T - score(start)[:, None]
