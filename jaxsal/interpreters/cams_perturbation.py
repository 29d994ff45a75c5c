"""Score-CAM and Ablation-CAM: channel weights from masked forward passes.

Both need one forward pass per channel K of the layer and image; the passes
run `chunk` channels at a time (for all images together) through
`jax.lax.map`, so memory stays bounded by one chunk's batch of N * chunk
images. The last chunk is padded with repeated channels whose scores are
discarded. Like the gradient CAMs (`jaxsal.interpreters.cams`), the maps are
returned at the layer's resolution, (N, h, w, 1), rectified unless
`relu=False`, and follow pytorch-grad-cam 1.5.7's definitions.

References:
  Wang et al., Score-CAM: score-weighted visual explanations for
  convolutional neural networks (CVPR workshops 2020).
  Desai and Ramaswamy, Ablation-CAM: visual explanations for deep
  convolutional network via gradient-free localization (WACV 2020).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.forward import forward, resolve_layer, select_class
from jaxsal.hyper import check_count
from jaxsal.interpreters.base import interpreter
from jaxsal.interpreters.cams import spatial, weighted

SCORECAM_EPS = 1e-8  # pytorch-grad-cam's ScoreCAM mask normalisation


def _validate(method, x, key, hyper):
    """`chunk` (channels per forward pass) must be a positive Python int."""
    return key, {**hyper, "chunk": check_count(hyper["chunk"], "chunk", method, example=16)}


def over_channels(fn, k: int, chunk: int) -> jax.Array:
    """`fn(idx)` -> (N, len(idx)) for channel indices in chunks; returns (N, k).

    The chunks run one after the other through `lax.map`; the last one is
    padded with copies of channel k - 1 whose results are dropped.
    """
    chunk = min(chunk, k)
    n_chunks = -(-k // chunk)
    idx = np.minimum(np.arange(n_chunks * chunk), k - 1).reshape(n_chunks, chunk)
    if n_chunks == 1:
        return fn(jnp.asarray(idx[0]))
    out = jax.lax.map(fn, jnp.asarray(idx))  # (n_chunks, N, chunk)
    return jnp.moveaxis(out, 0, 1).reshape(out.shape[1], -1)[:, :k]


def align_corners_matrix(size_in: int, size_out: int, dtype) -> jax.Array:
    """(size_out, size_in) bilinear weights with aligned corners (torch's UpsamplingBilinear2d)."""
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    src = np.arange(size_out) * scale
    i0 = np.minimum(np.floor(src).astype(int), size_in - 1)
    i1 = np.minimum(i0 + 1, size_in - 1)
    lam = src - i0
    m = np.zeros((size_out, size_in))
    np.add.at(m, (np.arange(size_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(size_out), i1), lam)
    return jnp.asarray(m, dtype)


def upsample_align_corners(a: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of (N, h, w, K) to (N, H, W, K) with aligned corners."""
    rows = align_corners_matrix(a.shape[1], size[0], a.dtype)
    cols = align_corners_matrix(a.shape[2], size[1], a.dtype)
    return jnp.einsum("Hh,nhwk,Ww->nHWk", rows, a, cols)


def layer_acts(params, x, layer: str, method: str) -> tuple[str, jax.Array, jax.Array]:
    """(resolved name, logits, activation) of one plain forward pass."""
    name = resolve_layer(params, layer)
    logits, acts = forward(params, x, taps=(name,))
    return name, logits, spatial(acts[name], method, layer)


@interpreter(static=("layer", "chunk", "relu"), validate=_validate)
def scorecam(params, x, c, *, key=None, layer: str = "target", chunk: int = 16, relu=True):
    """Score-CAM at a named layer: channels weighted by the softmax of masked-input scores.

    For each channel k, A_k is upsampled to the input (bilinear with aligned
    corners, torch's `UpsamplingBilinear2d`), scaled to [0, 1]
    (`(m - min) / (max - min + 1e-8)` per image and channel), multiplied into
    the input, and the masked image's class logit is its score. The weights
    are the softmax of the K scores of each image; the map is sum_k w_k A_k.
    This is pytorch-grad-cam's `ScoreCAM` (the paper's baseline-subtracted
    score is not used there either).

    Args:
      layer: torchvision path or alias (default "target").
      chunk: channels scored per forward pass, for all images together
        (pytorch-grad-cam's batch size, 16); the result does not depend on it.
      relu: rectify the map (as pytorch-grad-cam does).

    Returns:
      The map, shape (N, h, w, 1).

    References:
      Wang et al., Score-CAM (CVPR workshops 2020).
    """
    del key
    _, _, acts = layer_acts(params, x, layer, "scorecam")
    n, size, k = x.shape[0], x.shape[1:3], acts.shape[-1]

    def scores(idx):
        m = upsample_align_corners(acts[..., idx], size)  # (N, H, W, chunk)
        lo, hi = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
        m = jnp.moveaxis((m - lo) / (hi - lo + SCORECAM_EPS), -1, 1)  # (N, chunk, H, W)
        masked = (x[:, None] * m[..., None]).reshape((-1,) + x.shape[1:])
        logits = params.apply(masked)
        return select_class(logits, jnp.repeat(c, len(idx))).reshape(n, len(idx))

    weights = jax.nn.softmax(over_channels(scores, k, chunk), axis=-1)
    return weighted(weights[:, None, None, :], acts, relu)


@interpreter(static=("layer", "chunk", "relu"), validate=_validate)
def ablationcam(params, x, c, *, key=None, layer: str = "target", chunk: int = 32, relu=True):
    """Ablation-CAM at a named layer: channels weighted by the relative score drop when zeroed.

    For each channel k, the forward pass is rerun with A_k set to zero (the
    layer's output perturbed through `forward`'s deltas); with y the class
    logit and y_k the ablated one, w_k = (y - y_k) / y and the map is
    sum_k w_k A_k, as in pytorch-grad-cam's `AblationCAM` on its default
    `ratio_channels_to_ablate=1`.

    pytorch-grad-cam zeroes a channel only when the layer's minimum is 0 (a
    rectified layer, the usual target); otherwise it writes a large negative
    value (min - 1e7, growing with each image of its batch). jaxsal always
    zeroes, the paper's ablation; at rectified layers both agree.

    Args:
      layer: torchvision path or alias (default "target").
      chunk: channels ablated per forward pass, for all images together
        (pytorch-grad-cam's batch size, 32); the result does not depend on it.
      relu: rectify the map (as pytorch-grad-cam does).

    Returns:
      The map, shape (N, h, w, 1).

    References:
      Desai and Ramaswamy, Ablation-CAM (WACV 2020).
    """
    del key
    name, logits, acts = layer_acts(params, x, layer, "ablationcam")
    n, k = x.shape[0], acts.shape[-1]
    score = select_class(logits, c)

    def ablated(idx):
        off = (jnp.arange(k)[None, :] == idx[:, None]).astype(acts.dtype)  # (chunk, K)
        delta = -acts[:, None] * off[None, :, None, None, :]  # (N, chunk, h, w, K)
        xs = jnp.broadcast_to(x[:, None], (n, len(idx)) + x.shape[1:])
        out, _ = forward(
            params,
            xs.reshape((-1,) + x.shape[1:]),
            taps=(name,),
            deltas={name: delta.reshape((-1,) + acts.shape[1:])},
        )
        return select_class(out, jnp.repeat(c, len(idx))).reshape(n, len(idx))

    weights = (score[:, None] - over_channels(ablated, k, chunk)) / score[:, None]
    return weighted(weights[:, None, None, :], acts, relu)
