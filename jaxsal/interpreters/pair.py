"""Guided Integrated Gradients and Blur IG, as in PAIR's `saliency` 0.2.1, batched and jitted.

Both are path methods: attributions accumulate gradient times the step along
a path from a baseline to the input. PAIR's numpy implementations explain one
image at a time; these run the whole batch together, one model call per step
(Blur IG: `chunk` steps per call), with the same defaults and the same
arithmetic, and they compose with `jax.jit` and `jax.grad`. XRAI is in
`jaxsal.interpreters.xrai`.

References:
  Kapishnikov et al., Guided integrated gradients: an adaptive path method
  for removing noise (CVPR 2021).
  Xu et al., Attribution in scale and space (CVPR 2020) (Blur IG).
  PAIR saliency, https://github.com/PAIR-code/saliency.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.hyper import check_baseline, check_chunk, check_count
from jaxsal.interpreters.base import interpreter
from jaxsal.interpreters.gradient import simple_grad

CLOSE = 1e-9  # PAIR's EPSILON: math.isclose(l1_target, l1_current, rel_tol, abs_tol)
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's kernel radius in standard deviations


def check_unit(value, name: str, method: str, *, open_low: bool, example: str) -> None:
    """A scalar in [0, 1] ((0, 1] if open_low), checked when concrete (not a traced value)."""
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value)
    if v.shape != () or not np.issubdtype(v.dtype, np.number):
        raise TypeError(f"{method}: {name} must be a real scalar, got {value!r}; e.g. {example}")
    v = float(v)
    if not ((0.0 < v if open_low else 0.0 <= v) and v <= 1.0):
        bounds = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{method}: {name} must lie in {bounds}, got {value!r}; e.g. {example}")


# ---------------------------------------------------------------- Guided IG


def guided_step(x, g, x_in, x_base, l1_total, alpha, fraction, max_dist):
    """One step of Guided IG's path for one image (flat arrays): PAIR's inner loop.

    Repeatedly moves the features whose |gradient| is at most the `fraction`
    quantile ("lower") over all features, those already at the step's upper
    bound counting as infinite, toward the input, until the L1 distance to the
    input has shrunk to this step's target; no feature leaves the band
    [alpha - max_dist, alpha + max_dist] of the straight path. Returns the new
    point.
    """
    diff = x_in - x_base
    alpha_min = jnp.maximum(alpha - max_dist, 0.0)
    alpha_max = jnp.minimum(alpha + max_dist, 1.0)
    x_min = x_base + diff * alpha_min
    x_max = x_base + diff * alpha_max
    l1_target = l1_total * (1 - alpha)
    rank = jnp.floor((x.size - 1) * fraction).astype(jnp.int32)  # np.quantile(method="lower")
    moving = diff != 0

    def body(state):
        x, _, _, it = state
        x_alpha = jnp.where(moving, (x - x_base) / jnp.where(moving, diff, 1.0), alpha_max)
        x = jnp.where(x_alpha < alpha_min, x_min, x)
        l1 = jnp.abs(x - x_in).sum()
        close = jnp.abs(l1_target - l1) <= jnp.maximum(
            CLOSE * jnp.maximum(jnp.abs(l1_target), jnp.abs(l1)), CLOSE
        )
        grad = jnp.where(x == x_max, jnp.inf, g)  # features at the bound are not selected
        threshold = jnp.sort(jnp.abs(grad))[rank]
        selected = (jnp.abs(grad) <= threshold) & (grad != jnp.inf)
        l1_s = (jnp.abs(x - x_max) * selected).sum()
        gamma = jnp.where(l1_s > 0, (l1 - l1_target) / jnp.where(l1_s > 0, l1_s, 1.0), jnp.inf)
        partial = x + (x_max - x) * gamma
        moved = jnp.where(selected, jnp.where(gamma > 1.0, x_max, partial), x)
        return jnp.where(close, x, moved), gamma, close, it + 1

    def cond(state):
        _, gamma, done, it = state
        return ~done & (gamma > 1.0) & (it <= x.size)  # each pass fixes >= 1 feature

    init = (x, jnp.asarray(jnp.inf, x.dtype), jnp.asarray(False), jnp.asarray(0))
    return jax.lax.while_loop(cond, body, init)[0]


def _validate_guided(method, x, key, hyper):
    steps = check_count(hyper["steps"], "steps", method, example=200)
    check_unit(hyper["fraction"], "fraction", method, open_low=True, example="fraction=0.25")
    check_unit(hyper["max_dist"], "max_dist", method, open_low=False, example="max_dist=0.02")
    baseline = check_baseline(hyper["baseline"], x, method)
    return key, {**hyper, "steps": steps, "baseline": baseline}


@interpreter(static=("steps",), validate=_validate_guided)
def guided_ig(
    params, x, c, *, key=None, baseline=None, steps=200, fraction=0.25, max_dist=0.02
):  # fmt: skip
    """Guided Integrated Gradients: IG along a path that moves low-gradient features first.

    At step k of `steps` (alpha = k / steps) the path point moves until its L1
    distance to the input is (1 - alpha) of the baseline's, by repeatedly
    moving the features with the smallest |gradient| (up to the `fraction`
    quantile) toward the input, each feature staying within `max_dist` (in
    alpha) of the straight path; the attribution adds (new point - old point)
    * gradient at the old point. PAIR's `GuidedIG.GetMask` with the same defaults, for every image
    of the batch at once (the gradient is evaluated once per step for the
    batch). `max_dist=0` is IG on the straight line (left Riemann sum);
    `max_dist=1` the unbounded Guided IG.

    The path itself is treated as a constant under differentiation (it
    depends on the parameters only through which features are selected, a
    piecewise-constant choice), so `jax.grad` with respect to the parameters
    is exact almost everywhere; derivatives with respect to x or the baseline
    miss the path's dependence on them.

    Args:
      params: a `ModelParams`.
      x: NHWC batch.
      c: class index, an int or one per image.
      key: unused.
      baseline: array broadcastable to x (default zeros, PAIR's default).
      steps: path steps, one gradient each (200).
      fraction: share of the features moved per inner iteration, in (0, 1] (0.25).
      max_dist: largest deviation from the straight path, in alpha, in [0, 1] (0.02).

    Returns:
      Attributions of the shape of x; their sum approximates
      logit_c(x) - logit_c(baseline).

    References:
      Kapishnikov et al., Guided integrated gradients (CVPR 2021).
    """
    del key
    b = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(baseline, x.shape)
    n = x.shape[0]
    x_in, x_base = (jax.lax.stop_gradient(a.reshape(n, -1)) for a in (x, b))
    l1_total = jnp.abs(x_in - x_base).sum(axis=-1)
    fraction = jnp.asarray(fraction, x.dtype)
    max_dist = jnp.asarray(max_dist, x.dtype)

    def step(k, carry):
        point, attr = carry
        g = simple_grad(params, point.reshape(x.shape), c).reshape(n, -1)
        alpha = (k + 1.0) / steps
        move = functools.partial(guided_step, alpha=alpha, fraction=fraction, max_dist=max_dist)
        new = jax.vmap(move)(point, jax.lax.stop_gradient(g), x_in, x_base, l1_total)
        return new, attr + (new - point) * g

    init = (x_base, jnp.zeros_like(x_base))
    return jax.lax.fori_loop(0, steps, step, init)[1].reshape(x.shape)


# ---------------------------------------------------------------- Blur IG


def blur_schedule(max_sigma: float, steps: int, sqrt: bool) -> np.ndarray:
    """PAIR's sigmas, steps + 1 values from 0 to max_sigma (linear, or square-root spaced)."""
    if sqrt:
        return np.array([math.sqrt(float(i) * max_sigma / float(steps)) for i in range(steps + 1)])
    return np.array([float(i) * max_sigma / float(steps) for i in range(steps + 1)])


def kernel_constants(sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's kernel radius int(4 sigma + 0.5) and normaliser sum(phi) for each sigma."""
    radius = np.array([int(TRUNCATE * float(s) + 0.5) for s in sigmas])
    norm = np.ones(len(sigmas))
    for i, (s, r) in enumerate(zip(sigmas, radius)):
        if s > 0:
            norm[i] = np.exp(-0.5 / (s * s) * np.arange(-r, r + 1) ** 2).sum()
    return radius, norm


def blur_matrix(size: int, sigma, radius, norm, dtype) -> jax.Array:
    """(size, size) matrix of scipy's 1-D Gaussian filter with zero padding ("constant" mode).

    Entry (i, j) is the normalised kernel at j - i within the radius; sigma 0
    is the identity (PAIR returns the image unblurred).
    """
    d = (jnp.arange(size)[None, :] - jnp.arange(size)[:, None]).astype(dtype)
    safe = jnp.where(sigma > 0, sigma, 1.0)
    phi = jnp.exp(-0.5 / (safe * safe) * d**2) / norm
    phi = jnp.where(sigma > 0, phi, (d == 0).astype(dtype))
    return jnp.where(jnp.abs(d) <= radius, phi, 0.0)


def gaussian_blur(x: jax.Array, sigma, radius, norm) -> jax.Array:
    """scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0], mode="constant") on NHWC x."""
    rows = blur_matrix(x.shape[1], sigma, radius, norm, x.dtype)
    cols = blur_matrix(x.shape[2], sigma, radius, norm, x.dtype)
    return jnp.einsum("wv,nhvc->nhwc", cols, jnp.einsum("hu,nuwc->nhwc", rows, x))


def _validate_blur(method, x, key, hyper):
    steps = check_count(hyper["steps"], "steps", method, example=100)
    for name, example in (("max_sigma", 50), ("grad_step", 0.01)):
        v = hyper[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf:
            raise ValueError(
                f"{method}: {name} must be a positive Python number (it sets the blur kernels), "
                f"got {v!r}; e.g. {name}={example}"
            )
    chunk = check_chunk(hyper["chunk"], steps, "steps", method, x.shape, x.dtype)
    return key, {**hyper, "steps": steps, "chunk": chunk, "sqrt": bool(hyper["sqrt"])}


@interpreter(
    static=("max_sigma", "steps", "grad_step", "sqrt", "chunk"),
    validate=_validate_blur,
    chunk_of="steps",
)
def blur_ig(
    params, x, c, *, key=None, max_sigma=50.0, steps=100, grad_step=0.01, sqrt=False,
    chunk="auto",
):  # fmt: skip
    """Blur IG: integrated gradients along the path of ever stronger Gaussian blurs.

    With sigma_i = i max_sigma / steps (or its square root spacing), the
    attribution is -sum_i (sigma_{i+1} - sigma_i) * d blur / d sigma (x,
    sigma_i) * grad f(blur(x, sigma_i)), the derivative a forward difference
    over `grad_step`; blur is scipy's `gaussian_filter` over height and width
    (kernel radius int(4 sigma + 0.5), zero padding), as PAIR's `BlurIG`.
    (PAIR's `batch_size > 1` weights a whole batch with its last step's
    sigma difference; jaxsal weights each step by its own, PAIR's result at
    its default batch size 1.)

    Args:
      max_sigma: the strongest blur's sigma in pixels (50).
      steps: path steps, one gradient each (100).
      grad_step: sigma step of the forward difference (0.01).
      sqrt: square-root spacing of the sigmas (False).
      chunk: steps per model call: "auto" (default; the largest divisor of
        `steps` with chunk x N images under `jaxsal.hyper.auto_chunk`'s
        budget), an int dividing `steps`, or None (all at once). The result
        does not depend on it.

    Returns:
      Attributions of the shape of x.

    References:
      Xu et al., Attribution in scale and space (CVPR 2020).
    """
    del key
    sigmas = blur_schedule(float(max_sigma), steps, sqrt)
    at = sigmas[:-1]
    consts = [*kernel_constants(at), *kernel_constants(at + grad_step)]
    table = np.stack([at, *consts[:2], at + grad_step, *consts[2:], np.diff(sigmas)], axis=1)
    table = jnp.asarray(table.reshape(steps // chunk, chunk, 7), x.dtype)

    def part(rows):  # rows: (chunk, 7) = sigma, radius, norm, sigma', radius', norm', weight
        def blurs(r):
            step = gaussian_blur(x, r[0], r[1], r[2])
            return step, (gaussian_blur(x, r[3], r[4], r[5]) - step) / grad_step

        points, slopes = jax.vmap(blurs)(rows)  # (chunk, N, H, W, C) each
        g = simple_grad(params, points.reshape((-1,) + x.shape[1:]), jnp.tile(c, chunk))
        return jnp.tensordot(rows[:, 6], slopes * g.reshape(points.shape), axes=1)

    total = part(table[0]) if chunk == steps else jax.lax.map(part, table).sum(axis=0)
    return -total
