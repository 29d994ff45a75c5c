"""Extremal Perturbation: smooth masks of fixed areas that preserve the class.

For each area a, a coarse mask parameter (one value per `step` pixels,
initialised to 0.5) is upsampled bilinearly and smoothed with a Gaussian of
`sigma` pixels into a mask m in [0, 1]; the preserved image is
`x(m) = m * x + (1 - m) * blur(x)`. The energy maximised is

    f(x(m))_c - w_t * mean((sort(m) - r_a)^2),

where `r_a` is the sorted template of a mask of area a (a share a of ones)
and `w_t = 300 * 1.0035^t` tightens the area constraint over the iterations.
All areas are optimised together; the saliency map is the sum of their
masks (TorchRay's pointing-game set-up sums areas 0.025, 0.05, 0.1, 0.2).

Differences from TorchRay's reference implementation: the mask is smoothed
with a Gaussian instead of a smooth max-convolution, the perturbation is a
blend with one blurred image instead of a blur pyramid, no flip jitter, and
Adam (lr 0.05) instead of SGD with momentum (800 iterations there). The mask
starts at 0.5 (TorchRay: 1) and the area weight ramps up from 0 over the first
`warmup` iterations: where the score's gradient is exactly zero (a flat
background, where blur(x) = x), a tied start would otherwise let the sort's
tie order, not the score, decide which pixels fill the area, and Adam's
normalised steps keep that first choice.

References:
  Fong, Patrick and Vedaldi. Understanding deep networks via extremal
  perturbations and smooth masks. ICCV 2019. https://arxiv.org/abs/1910.08485
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.explainers._core import as_model, check_inputs, optimize, resize
from jaxsal.explainers.references import gaussian_blur, make_reference

AREAS = (0.025, 0.05, 0.1, 0.2)


def area_template(areas, size: int) -> np.ndarray:
    """Sorted masks of the given areas: (K, size), zeros then `int(size * a)`-ish ones."""
    ref = np.ones((len(areas), size))
    for i, a in enumerate(areas):
        ref[i, : int(size * (1 - a))] = 0.0
    return ref


def smooth_masks(p: jax.Array, size: tuple[int, int], sigma: float) -> jax.Array:
    """Coarse parameters (K, h, w) to smooth masks (K, H, W): bilinear upsampling, then blur."""
    m = resize(p, size)[..., None]
    return gaussian_blur(m, sigma)[..., 0]


def smoothing_matrices(grid: tuple[int, int], size: tuple[int, int], sigma: float, dtype):
    """`smooth_masks` as two matrices: `smooth_masks(p) == A_h @ p @ A_w.T` for every p (h, w).

    Upsampling and blur are linear and separable, and both keep a constant
    constant, so `A_h[:, i]` is column 0 of the smoothed mask that is one on
    row i and zero elsewhere (likewise `A_w`). Two small matrix products per
    step are far cheaper on a CPU than a 1-channel convolution with a kernel
    of radius 4 sigma and its gradient.

    Returns:
      A_h (H, h) and A_w (W, w).
    """
    gh, gw = grid
    rows = smooth_masks(jnp.broadcast_to(jnp.eye(gh, dtype=dtype)[:, :, None], (gh, gh, gw)),
                        size, sigma)  # fmt: skip
    cols = smooth_masks(jnp.broadcast_to(jnp.eye(gw, dtype=dtype)[:, None, :], (gw, gh, gw)),
                        size, sigma)  # fmt: skip
    return rows[:, :, 0].T, cols[:, 0, :].T


def _objective(model, p, d, hyper, t):
    x = d["x"]
    m = jnp.einsum("Hh,khw,Ww->kHW", hyper["rows"], p, hyper["cols"])
    xm = m[..., None] * x[None] + (1.0 - m[..., None]) * d["r"][None]
    s = model(xm)[:, d["c"]]
    flat = jnp.sort(m.reshape(m.shape[0], -1), axis=1)
    ramp = jnp.clip(t / hyper["warmup"], 0.0, 1.0)
    weight = hyper["regul"] * hyper["growth"] ** t * ramp
    regul = weight * ((flat - hyper["template"]) ** 2).mean(axis=1)
    return (regul - s).sum(), s


def extremal_perturbation(
    model,
    x: jax.Array,
    c,
    *,
    key: jax.Array | None = None,
    areas=AREAS,
    step: int = 7,
    sigma: float = 21.0,
    reference="blur",
    steps: int = 300,
    lr: float = 0.05,
    regul: float = 300.0,
    growth: float = 1.0035,
    init: float = 0.5,
    warmup: int | None = None,
    scores: str = "raw",
    chunk: int | None = None,
    progress: bool = False,
    return_masks: bool = False,
) -> jax.Array:
    """Extremal perturbations of the given areas (preservation game, blurred reference).

    Args:
      model: a `ModelParams` or a function `f(x) -> (N, classes)`.
      x: images (N, H, W, C).
      c: class per image.
      key: PRNG key (for a noise reference).
      areas: target areas as shares of the image.
      step: pixels per mask parameter (7 at 224 px).
      sigma: Gaussian smoothing of the mask in pixels (21 at 224 px).
      reference: see `jaxsal.explainers.references`; default blur with sigma 10
        (TorchRay blurs up to sigma 20 at 224 px: pass `references.blur(20)`).
      steps: Adam iterations.
      lr: Adam's learning rate.
      regul: initial weight of the area constraint (300).
      growth: factor applied to that weight every iteration (1.0035).
      init: initial mask value (TorchRay: 1; see the module docstring).
      warmup: iterations over which the area weight ramps up from 0 (default
        steps // 10; 0 or 1: no ramp).
      scores: what f is: "raw" (TorchRay's reward: the model's output, logits
        for a `ModelParams`), "softmax" or "log_softmax".
      chunk, progress: compiled iterations per call and a tqdm bar.
      return_masks: return the masks per area (N, K, H, W) instead of their sum.

    Returns:
      The summed masks, (N, H, W, 1); or the masks per area.

    References:
      Fong, Patrick and Vedaldi (2019).
    """
    model = as_model(model, scores)
    x, c = check_inputs(model, x, c)
    n, h, w, _ = x.shape
    areas = tuple(float(a) for a in np.atleast_1d(areas))
    if not all(0.0 < a < 1.0 for a in areas):
        raise ValueError(f"areas must be shares of the image in (0, 1), got {areas}")
    gh, gw = -(-h // step), -(-w // step)
    p0 = jnp.full((n, len(areas), gh, gw), init, x.dtype)
    data = {"x": x, "c": c, "r": make_reference(reference, x, key)}
    template = jnp.asarray(area_template(areas, h * w), x.dtype)
    warmup = max(steps // 10, 1) if warmup is None else max(int(warmup), 1)
    rows, cols = smoothing_matrices((gh, gw), (h, w), float(sigma), x.dtype)
    hyper = {"lr": lr, "regul": regul, "growth": growth, "template": template, "warmup": warmup,
             "rows": rows, "cols": cols}  # fmt: skip
    p, _ = optimize(_objective, model, p0, data, hyper, steps=steps, chunk=chunk,
                    progress=progress, desc="extremal")  # fmt: skip
    masks = jnp.einsum("Hh,nkhw,Ww->nkHW", rows, p, cols)
    return masks if return_masks else masks.sum(axis=1)[..., None]
