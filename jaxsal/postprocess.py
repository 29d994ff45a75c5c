"""Post-processing of raw attributions into heatmaps (SPEC section 1 and 3).

Interpreters return raw attributions; these functions give the per-method
normalisations of the fooling paper and the sanity-checks paper, channel
reduction and upsampling. All work per sample on NHWC batches and are
differentiable (they sit inside fooling losses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPS = 1e-8


def reduce_channels(h: jax.Array, mode: str = "sum") -> jax.Array:
    """Channel reduction with keepdims: "sum", "abs_sum", "max_abs" or "mean"."""
    ops = {
        "sum": lambda a: a.sum(-1, keepdims=True),
        "abs_sum": lambda a: jnp.abs(a).sum(-1, keepdims=True),
        "max_abs": lambda a: jnp.abs(a).max(-1, keepdims=True),
        "mean": lambda a: a.mean(-1, keepdims=True),
    }
    if mode not in ops:
        raise ValueError(f'unknown channel reduction "{mode}"; choose one of {", ".join(ops)}')
    return ops[mode](h)


def _per_sample(fn, h):
    return fn(h, axis=tuple(range(1, h.ndim)), keepdims=True)


def normalize(h: jax.Array, eps: float = EPS) -> jax.Array:
    """The fooling paper's `normalize`: subtract the per-sample min, divide by max + eps."""
    h = h - _per_sample(jnp.min, h)
    return h / (_per_sample(jnp.max, h) + eps)


def gradcam_heatmap(cam: jax.Array, eps: float = EPS) -> jax.Array:
    """The fooling paper's Grad-CAM map: relu(cam) / (max + eps), no min subtraction."""
    cam = jax.nn.relu(cam)
    return cam / (_per_sample(jnp.max, cam) + eps)


def lrp_t_heatmap(relevance: jax.Array, eps: float = EPS) -> jax.Array:
    """LRP_T map: sum over channels, relu, per-sample min-max."""
    return normalize(jax.nn.relu(reduce_channels(relevance, "sum")), eps)


def simple_grad_t_heatmap(grad: jax.Array, eps: float = EPS) -> jax.Array:
    """SimpleGrad_T map for display: 2 * sum_c |g|, relu, per-sample min-max."""
    return normalize(jax.nn.relu(2.0 * reduce_channels(grad, "abs_sum")), eps)


def simple_grad_heatmap(grad: jax.Array, eps: float = EPS) -> jax.Array:
    """SimpleGrad at the input: sum_c |g| divided by its per-sample total."""
    a = reduce_channels(grad, "abs_sum")
    return a / (_per_sample(jnp.sum, a) + eps)


def absolute_map(h: jax.Array, percentile: float = 99.0) -> jax.Array:
    """Sanity-checks absolute map: sum_c |h|, clipped at the percentile, scaled to [0, 1]."""
    a = reduce_channels(h, "abs_sum")
    top = jnp.percentile(a, percentile, axis=(1, 2, 3), keepdims=True)
    return jnp.clip(a / (top + EPS), 0.0, 1.0)


def signed_map(h: jax.Array, percentile: float = 99.0) -> jax.Array:
    """Sanity-checks signed map: sum_c h over the percentile of |.|, clipped to [-1, 1]."""
    s = reduce_channels(h, "sum")
    top = jnp.percentile(jnp.abs(s), percentile, axis=(1, 2, 3), keepdims=True)
    return jnp.clip(s / (top + EPS), -1.0, 1.0)


def upsample(h: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
    """Resizes an NHWC map to `size` = (H, W).

    "nearest" picks source index floor(i * in / out) (torch's nearest);
    "bilinear" uses half-pixel centres (torch's align_corners=False).
    """
    n, h_in, w_in, ch = h.shape
    oh, ow = size
    if method == "nearest":
        rows = (jnp.arange(oh) * h_in) // oh
        cols = (jnp.arange(ow) * w_in) // ow
        return h[:, rows][:, :, cols]
    if method == "bilinear":
        return jax.image.resize(h, (n, oh, ow, ch), "linear", antialias=False)
    raise ValueError(f'unknown interpolation "{method}"; use "nearest" or "bilinear"')
