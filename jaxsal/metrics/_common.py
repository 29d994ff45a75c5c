"""Shared pieces of the evaluation metrics: input checks, map preparation, baselines, scores.

Conventions of every metric (they follow Quantus 0.6.0 on the same arrays):

- ``x`` is an NHWC float batch, ``y`` one class per image, ``a`` a map per
  image, (N, H, W) or (N, H, W, C).
- Metrics that relate attributions to input features (faithfulness,
  robustness, axioms) broadcast an (N, H, W) map over the channels, as
  Quantus does with its (N, 1, H, W) maps: every channel value of a pixel
  carries the pixel's attribution. An (N, H, W, C) map is used per value.
- ``normalise`` divides each image's map by its largest absolute value.
  Quantus's `normalise_by_max` divides by the largest value of the whole
  batch; the two agree for one image, or with Quantus's
  ``normalise_func_kwargs={"normalise_axes": (1, 2, 3)}``.
- ``abs`` takes absolute values after normalising (as Quantus does).
- Baselines "black", "white" and "mean" are each image's minimum, maximum and
  mean over all its values (Quantus's batched baselines); a number is used as
  it is.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

BASELINES = ("black", "white", "mean")


def is_traced(v) -> bool:
    return isinstance(v, jax.core.Tracer)


def check_images(x, name: str = "x") -> jax.Array:
    """`x` as an NHWC float batch, or an error that names the fix."""
    x = jnp.asarray(x)
    if x.ndim != 4:
        hint = f" Add a batch axis with {name}[None]." if x.ndim == 3 else ""
        raise ValueError(
            f"{name} must be an NHWC batch of images (N, H, W, C), got shape {tuple(x.shape)}.{hint}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point batch, got {x.dtype}; "
            f"convert with {name}.astype(jnp.float32)"
        )
    return x


def check_labels(y, n: int, name: str = "y") -> jax.Array:
    """`y` as one integer class per image, shape (n,)."""
    y = jnp.asarray(y)
    if y.shape != (n,):
        raise ValueError(
            f"{name} must hold one class per image, shape ({n},), got shape {tuple(y.shape)}; "
            f"for one class for all images use jnp.full({n}, c)"
        )
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"{name} must be integer class indices, got {y.dtype}")
    return y


def check_map(a, shape: tuple[int, ...] | None = None, name: str = "a") -> jax.Array:
    """`a` as a map per image, (N, H, W) or (N, H, W, C) matching an NHWC `shape`."""
    a = jnp.asarray(a)
    if a.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be a map per image, (N, H, W) or (N, H, W, C), got shape {tuple(a.shape)}"
        )
    if shape is not None:
        n, h, w, c = shape
        if a.shape[:3] != (n, h, w) or (a.ndim == 4 and a.shape[3] not in (1, c)):
            hint = (
                " It looks like NCHW: transpose with a.transpose(0, 2, 3, 1)."
                if a.ndim == 4 and a.shape[1] in (1, c) and a.shape[2:] == (h, w)
                else ""
            )
            raise ValueError(
                f"{name} must have shape ({n}, {h}, {w}) or ({n}, {h}, {w}, {c}) to match x of "
                f"shape {tuple(shape)}, got {tuple(a.shape)}.{hint}"
            )
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    return a


def check_mask(s, shape: tuple[int, ...], name: str = "mask") -> jax.Array:
    """A boolean ground-truth mask per image, (N, H, W) (or (N, H, W, 1))."""
    s = jnp.asarray(s)
    if s.ndim == 4 and s.shape[-1] == 1:
        s = s[..., 0]
    if s.shape != tuple(shape[:3]):
        raise ValueError(
            f"{name} must be a mask per image of shape {tuple(shape[:3])} (N, H, W), got "
            f"{tuple(s.shape)}; turn boxes into masks with jaxsal.metrics.box_mask(boxes, (H, W))"
        )
    return s.astype(bool)


def check_key(key, name: str = "key") -> jax.Array:
    if key is None:
        raise ValueError(f"this metric draws random numbers: pass {name}=jax.random.key(seed)")
    return key


def check_baseline(baseline) -> None:
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(
                f'unknown baseline "{baseline}"; use one of {", ".join(BASELINES)} or a number'
            )
    elif not isinstance(baseline, (int, float)):
        raise TypeError(f"baseline must be a name ({', '.join(BASELINES)}) or a number")


def check_positive(value, name: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def features(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A map broadcast to the NHWC input's shape (an (N, H, W) map to every channel)."""
    return jnp.broadcast_to(a[..., None] if a.ndim == 3 else a, shape)


def pixel_map(a: jax.Array) -> jax.Array:
    """An (N, H, W) map: channels summed (as `quantus.explain` does by default)."""
    return a if a.ndim == 3 else a.sum(axis=-1)


def normalise_by_max(a: jax.Array) -> jax.Array:
    """Each image's map divided by its largest absolute value (zero maps stay zero)."""
    axes = tuple(range(1, a.ndim))
    m = jnp.abs(a).max(axis=axes, keepdims=True)
    return a / jnp.where(m == 0, 1, m)


def prepare(a: jax.Array, *, abs: bool, normalise: bool) -> jax.Array:
    """Quantus's preprocessing of a map: normalise by the maximum, then absolute values."""
    if normalise:
        a = normalise_by_max(a)
    if abs:
        a = jnp.abs(a)
    return a


def baseline_value(x: jax.Array, baseline) -> jax.Array:
    """Each image's baseline value, shaped (N, 1, ...) to broadcast against `x`."""
    axes = tuple(range(1, x.ndim))
    if baseline == "black":
        return x.min(axis=axes, keepdims=True)
    if baseline == "white":
        return x.max(axis=axes, keepdims=True)
    if baseline == "mean":
        return x.mean(axis=axes, keepdims=True)
    return jnp.full((x.shape[0],) + (1,) * (x.ndim - 1), baseline, x.dtype)


def model_outputs(model: Callable, x: jax.Array) -> jax.Array:
    out = model(x)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"model(x) must return logits of shape (N, classes) = ({x.shape[0]}, classes), got "
            f"{tuple(out.shape)}; wrap the model, e.g. lambda x: jaxsal.logits(params, x)"
        )
    return out


def class_scores(model: Callable, x: jax.Array, y: jax.Array, *, softmax: bool) -> jax.Array:
    """The class-`y` output per image: the logit, or its softmax probability."""
    out = model_outputs(model, x)
    if softmax:
        out = jax.nn.softmax(out, axis=-1)
    return jnp.take_along_axis(out, y[:, None], axis=1)[:, 0]


def predictions(model: Callable, x: jax.Array) -> jax.Array:
    """The predicted class per image."""
    return model_outputs(model, x).argmax(axis=-1)


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation of each row pair, (N, M) and (N, M) to (N,); NaN for a constant row."""
    am = a - a.mean(axis=1, keepdims=True)
    bm = b - b.mean(axis=1, keepdims=True)
    r = (am * bm).sum(axis=1) / jnp.sqrt((am**2).sum(axis=1) * (bm**2).sum(axis=1))
    return jnp.clip(r, -1.0, 1.0)  # as scipy.stats.pearsonr; NaN stays NaN


def auc(curves: jax.Array, *, dx: float = 1.0) -> jax.Array:
    """Area under each curve by the trapezoidal rule along the last axis.

    Quantus's `calculate_auc` (``np.trapz(curve, dx=dx)``), e.g. of the
    curves of `pixel_flipping` and `region_perturbation`.

    Args:
      curves: (..., K) values at K equally spaced points.
      dx: spacing of the points.

    Returns:
      (...,) areas; 0 for a single point.
    """
    return jnp.trapezoid(jnp.asarray(curves), dx=dx, axis=-1)
