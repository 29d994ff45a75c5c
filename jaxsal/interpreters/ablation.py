"""Occlusion and Feature Ablation: the class logit's drop when parts of x are replaced.

Both are Captum 0.9's perturbation attributions with the interpreter
signature. They are model-agnostic: the model is only called through
`params.apply`, on batches of perturbed copies of x, `chunk` perturbations
(each a copy of the whole batch) per forward pass through `jax.lax.map`, so
memory stays bounded however many perturbations there are.

This module also holds what the perturbation methods of `shap.py` share:
the chunked evaluation (`map_chunks`, `class_scores`), references
(`reference_like`, `baseline_distribution`), and feature masks
(`feature_mask_4d`, `feature_count`, `with_feature_count`).

References:
  Zeiler and Fergus. Visualizing and understanding convolutional networks.
  ECCV 2014. https://arxiv.org/abs/1311.2901 (Occlusion)
  Kokhlikyan et al. Captum: a unified and generic model interpretability
  library for PyTorch. 2020. https://arxiv.org/abs/2009.07896
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.forward import select_class
from jaxsal.interpreters.base import interpreter

# ------------------------------------------------------------------ shared helpers


def check_chunk(chunk, method: str, what: str = "perturbations") -> None:
    """`chunk` is None (everything in one pass) or a positive int."""
    if chunk is None:
        return
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(
            f"{method}: chunk must be a positive int ({what} per forward pass) or None "
            f"(all at once), got {chunk!r}"
        )


def check_count(value, name: str, method: str, minimum: int = 1, why: str = "") -> int:
    """A static count hyper-parameter (`n_samples`, ...) as a Python int >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{method}: {name} must be an int >= {minimum}{why}, got {value!r}")
    return int(value)


def map_chunks(fn: Callable, xs, chunk: int | None):
    """`fn` on the leading axis of the pytree `xs` (P, ...), `chunk` rows per call.

    Without `chunk` (or when it covers P) `fn` sees all rows at once; otherwise
    the rows are padded (with copies of the last row) to a multiple of `chunk`
    and mapped with `jax.lax.map`, and the padding's outputs are dropped.
    """
    p = jax.tree.leaves(xs)[0].shape[0]
    if chunk is None or chunk >= p:
        return fn(xs)
    m = -(-p // chunk)
    pad = m * chunk - p

    def split(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape((m, chunk) + a.shape[1:])

    out = jax.lax.map(fn, jax.tree.map(split, xs))
    return jax.tree.map(lambda a: a.reshape((m * chunk,) + a.shape[2:])[:p], out)


def class_scores(params, c, xs: jax.Array) -> jax.Array:
    """logit_c of a stack of perturbed batches `xs` (k, N, H, W, C) -> (k, N)."""
    k, n = xs.shape[:2]
    out = params.apply(xs.reshape((k * n,) + xs.shape[2:]))
    return select_class(out, jnp.tile(c, k)).reshape(k, n)


def reference_like(baseline, x: jax.Array, method: str, name: str = "baseline") -> jax.Array:
    """The reference replacing removed parts of x: zeros by default, broadcast to x's shape."""
    if baseline is None:
        return jnp.zeros_like(x)
    b = jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(
            f"{method}: {name} of shape {b.shape} does not broadcast to x's shape {x.shape}; "
            f"pass a scalar, one image (H, W, C) or one per image (N, H, W, C), NHWC"
        ) from None


def baseline_distribution(baselines, x, method: str) -> jax.Array:
    """Reference images (B, H, W, C): an array of them, one image (H, W, C), or a scalar."""
    if baselines is None:
        raise ValueError(
            f"{method} needs baselines=, reference images of shape (B, H, W, C) to draw "
            "from, e.g. baselines=jnp.zeros((1,) + x.shape[1:])"
        )
    b = jnp.asarray(baselines, x.dtype)
    if b.ndim == 0:
        b = jnp.full((1,) + x.shape[1:], b)
    elif b.ndim == x.ndim - 1:
        b = b[None]
    if b.ndim != x.ndim or b.shape[1:] != x.shape[1:] or b.shape[0] < 1:
        raise ValueError(
            f"{method}: baselines of shape {tuple(jnp.shape(baselines))} do not match x of "
            f"shape {x.shape}; give reference images (B,) + {x.shape[1:]} (NHWC)"
        )
    return b


def _no_mask(method: str) -> ValueError:
    return ValueError(
        f"{method} needs feature_mask=, an integer array of feature ids 0 .. M-1 "
        "(e.g. superpixels), of shape (H, W), (N, H, W) or broadcastable to x (N, H, W, C)"
    )


def _check_integer(dtype, method: str) -> None:
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{method}: feature_mask must hold integer feature ids, got {dtype}; convert "
            "with feature_mask.astype(int)"
        )


def feature_mask_4d(feature_mask, x_shape, method: str) -> jax.Array:
    """An integer feature mask as a 4-D array that broadcasts to x (N, H, W, C).

    Accepted: (H, W) shared by all images and channels, (N, H, W) one per
    image, or a 4-D array broadcastable to x such as (1, H, W, 1) or (N, H, W, C).
    """
    if feature_mask is None:
        raise _no_mask(method)
    m = jnp.asarray(feature_mask) if not isinstance(feature_mask, jax.Array) else feature_mask
    _check_integer(m.dtype, method)
    if m.ndim == 2:
        m = m[None, :, :, None]
    elif m.ndim == 3:
        m = m[..., None]
    ok = m.ndim == 4 and all(d in (1, e) for d, e in zip(m.shape, x_shape))
    if not ok:
        raise ValueError(
            f"{method}: feature_mask of shape {tuple(jnp.shape(feature_mask))} does not fit x "
            f"of shape {tuple(x_shape)}; give (H, W), (N, H, W) or a 4-D array broadcastable "
            "to x (N, H, W, C)"
        )
    return m


def feature_count(feature_mask, n_features, method: str) -> int:
    """The number of features M: `n_features`, or max(feature_mask) + 1 of a concrete mask."""
    if feature_mask is None:
        raise _no_mask(method)
    concrete = not isinstance(feature_mask, jax.core.Tracer)
    if concrete:
        m = np.asarray(feature_mask)
        _check_integer(m.dtype, method)
        if m.size == 0:
            raise ValueError(f"{method}: feature_mask is empty; give one feature id per pixel")
        if m.min() < 0:
            raise ValueError(
                f"{method}: feature_mask has negative id {m.min()}; feature ids must be 0 .. M-1"
            )
        top = int(m.max()) + 1
    if n_features is None:
        if not concrete:
            raise ValueError(
                f"{method}: the number of features cannot be read from a traced feature_mask; "
                "pass n_features=M (feature ids 0 .. M-1), or close over a concrete mask"
            )
        return top
    n = check_count(n_features, "n_features", method)
    if concrete and top > n:
        raise ValueError(
            f"{method}: feature_mask has id {top - 1} but n_features={n}; pass "
            f"n_features={top} or leave it out"
        )
    return n


def with_feature_count(method: Callable) -> Callable:
    """Fills the static `n_features` of a feature-mask interpreter from its concrete mask.

    The number of features fixes the shapes of the computation, so it must be
    known before tracing; under a user's `jit` with a traced mask, pass it.
    """

    @functools.wraps(method)
    def wrapped(params, x, c, *, key=None, feature_mask=None, n_features=None, **hyper):
        n = feature_count(feature_mask, n_features, method.__name__)
        return method(params, x, c, key=key, feature_mask=feature_mask, n_features=n, **hyper)

    return wrapped


def per_feature(values: jax.Array, mask: jax.Array, x_shape) -> jax.Array:
    """Each pixel gets its feature's value: values (N, M), mask broadcastable to x -> x's shape."""
    ids = jnp.broadcast_to(mask, x_shape)
    return jax.vmap(lambda v, i: v[i])(values, ids)


def features_on(z: jax.Array, mask: jax.Array, x_shape) -> jax.Array:
    """Pixel mask (k, N, H, W, C) of the features switched on in z (k, N, M) or (k, M)."""
    ids = jnp.broadcast_to(mask, x_shape)
    if z.ndim == 2:
        return z[:, ids]
    return jax.vmap(lambda zk: jax.vmap(lambda zn, i: zn[i])(zk, ids))(z)


def prepared(prepare: Callable[[tuple, dict], dict]) -> Callable[[Callable], Callable]:
    """Runs `prepare(x_shape, hyper) -> hyper` on the caller's side, before the jit.

    There concrete hyper-parameters can still be checked (under the jit they
    are traced) and static ones made hashable.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapped(params, x, c, *, key=None, **hyper):
            hyper = prepare(tuple(jnp.shape(x)), dict(hyper))
            return method(params, x, c, key=key, **hyper)

        return wrapped

    return decorate


def concrete(value) -> np.ndarray | None:
    """`value` as a NumPy array when it is concrete, None when it is traced or absent."""
    if value is None or isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


# ------------------------------------------------------------------ Feature Ablation


@with_feature_count
@interpreter(static=("n_features", "chunk"))
def feature_ablation(
    params, x, c, *, key=None, feature_mask=None, n_features=None, baseline=None, chunk=None
):
    """The logit's drop when each feature is replaced by the baseline (Captum's FeatureAblation).

    `attr[u] = f_c(x) - f_c(x with feature m(u) set to the baseline)` for every
    pixel u of feature m(u); all pixels of a feature share its value.

    Args:
      feature_mask: integer feature ids 0 .. M-1 (e.g. superpixels): (H, W) for all
        images and channels, (N, H, W) one per image, or 4-D broadcastable to x.
      n_features: M (default: read from the concrete mask; pass it when the mask is traced).
      baseline: the replacement value: scalar or array broadcastable to x (default 0).
      chunk: features per forward pass (None: all at once); Captum's
        `perturbations_per_eval`.

    Returns:
      Attributions of the shape of x.

    References:
      Captum's `FeatureAblation`.
    """
    del key
    check_chunk(chunk, "feature_ablation", "features")
    mask = feature_mask_4d(feature_mask, x.shape, "feature_ablation")
    ref = reference_like(baseline, x, "feature_ablation")
    ids = jnp.broadcast_to(mask, x.shape)
    f0 = select_class(params.apply(x), c)

    def drops(feats):
        xs = jnp.where(ids[None] == feats[:, None, None, None, None], ref[None], x[None])
        return f0[None] - class_scores(params, c, xs)

    d = map_chunks(drops, jnp.arange(n_features), chunk)  # (M, N)
    return per_feature(d.T, mask, x.shape)


# ------------------------------------------------------------------ Occlusion


def _as_tuple(v, name: str) -> tuple[int, ...]:
    def is_int(e):
        return isinstance(e, int | np.integer) and not isinstance(e, bool)

    t = (v,) if is_int(v) else tuple(v) if isinstance(v, tuple | list) else None
    if t is None or not t or not all(is_int(e) for e in t):
        raise ValueError(f"occlusion: {name} must be an int or a tuple of ints, got {v!r}")
    return tuple(int(e) for e in t)


def windows(shape, sliding_window_shapes, strides) -> list[np.ndarray]:
    """Per axis of (H, W, C), the 0/1 matrix (windows along the axis, axis length).

    Window i along an axis covers [i * stride, min(i * stride + size, length)),
    for i < ceil((length - size) / stride) + 1 (Captum's shift counts: the last
    window may run over the border and is cut there).
    """
    size = _as_tuple(sliding_window_shapes, "sliding_window_shapes")
    if len(size) == 2:
        size = size + (shape[-1],)  # all channels at once
    if len(size) != 3:
        raise ValueError(
            f"occlusion: sliding_window_shapes must be (h, w) or (h, w, channels) in NHWC order, "
            f"got {sliding_window_shapes!r}"
        )
    step = _as_tuple(1 if strides is None else strides, "strides")
    if len(step) == 1:
        step = step * 3
    elif len(step) == 2:
        step = step + (shape[-1],)
    if len(step) != 3:
        raise ValueError(
            f"occlusion: strides must be an int, (sh, sw) or (sh, sw, sc), got {strides!r}"
        )
    mats = []
    for axis, (n, w, s) in enumerate(zip(shape, size, step)):
        label = ("height", "width", "channels")[axis]
        if not 1 <= w <= n:
            raise ValueError(
                f"occlusion: sliding_window_shapes {size} does not fit the image {tuple(shape)} "
                f"(H, W, C) along its {label}; use sizes between 1 and {n}"
            )
        if s < 1 or (s > w and n > w):
            raise ValueError(
                f"occlusion: stride {s} along the {label} must be between 1 and the window's "
                f"size {w}, or some pixels are never occluded; reduce strides"
            )
        count = math.ceil((n - w) / s) + 1
        starts = np.arange(count)[:, None] * s
        u = np.arange(n)[None, :]
        mats.append(((u >= starts) & (u < starts + w)).astype(np.float64))
    return mats


def _window_tuples(x_shape: tuple, hyper: dict) -> dict:
    for name in ("sliding_window_shapes", "strides"):
        if isinstance(hyper.get(name), list):
            hyper[name] = tuple(hyper[name])
    return hyper


@prepared(_window_tuples)
@interpreter(static=("sliding_window_shapes", "strides", "chunk"))
def occlusion(
    params, x, c, *, key=None, sliding_window_shapes=None, strides=None, baseline=None,
    chunk=None,
):  # fmt: skip
    """Mean drop of the logit over the sliding windows covering each value (Captum's Occlusion).

    For each window P, `d_P = f_c(x) - f_c(x with P set to the baseline)`;
    each value of x gets the sum of `d_P` over the windows covering it divided
    by their number, as Captum averages overlapping windows.

    Args:
      sliding_window_shapes: the window, (h, w) covering all channels or
        (h, w, channels): NHWC order, where Captum's is (channels, h, w).
      strides: an int for every axis, (sh, sw) or (sh, sw, sc) (default 1). A
        stride may not exceed the window where the window is smaller than the image.
      baseline: the replacement value: scalar or array broadcastable to x (default 0).
      chunk: windows per forward pass (None: all at once); Captum's
        `perturbations_per_eval`.

    Returns:
      Attributions of the shape of x.

    References:
      Zeiler and Fergus, Visualizing and understanding convolutional networks (2014).
      Captum's `Occlusion`.
    """
    del key
    check_chunk(chunk, "occlusion", "windows")
    if sliding_window_shapes is None:
        raise ValueError(
            "occlusion needs sliding_window_shapes=, e.g. (8, 8) for 8x8 patches over all "
            "channels or (8, 8, 1) for one channel at a time (NHWC order)"
        )
    a_h, a_w, a_c = (jnp.asarray(m, x.dtype) for m in windows(x.shape[1:], sliding_window_shapes,
                                                                strides))  # fmt: skip
    ref = reference_like(baseline, x, "occlusion")
    f0 = select_class(params.apply(x), c)
    grid = np.stack(np.meshgrid(*(np.arange(len(m)) for m in (a_h, a_w, a_c)), indexing="ij"), -1)

    def drops(ijk):
        win = a_h[ijk[:, 0]][:, :, None, None] * a_w[ijk[:, 1]][:, None, :, None]
        win = win * a_c[ijk[:, 2]][:, None, None, :]
        xs = jnp.where(win[:, None] > 0, ref[None], x[None])
        return f0[None] - class_scores(params, c, xs)

    d = map_chunks(drops, jnp.asarray(grid.reshape(-1, 3)), chunk)  # (P, N)
    d = d.reshape(a_h.shape[0], a_w.shape[0], a_c.shape[0], -1)
    total = jnp.einsum("ijkn,ih,jw,kc->nhwc", d, a_h, a_w, a_c)
    count = jnp.einsum("h,w,c->hwc", a_h.sum(0), a_w.sum(0), a_c.sum(0))
    return total / count[None]
