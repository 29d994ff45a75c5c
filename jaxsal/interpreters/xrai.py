"""XRAI: region attributions from IG, by greedy selection of segments, as PAIR's `saliency` 0.2.1.

XRAI ranks image regions by their density of (channel-max) Integrated
Gradients attribution: starting from nothing, it repeatedly adds the segment
whose not-yet-covered pixels have the highest mean attribution, and paints
those pixels with that mean. The segmentation is an input
(`segments=`): `xrai_segments` computes PAIR's default on the host
(Felzenszwalb at six scales, dilated), because scikit-image's segmentation
cannot run inside a jitted program. The greedy selection is a jitted
`lax.while_loop` over regions, vmapped over images; the painted values are
then recomputed outside the loop as per-region means of the attribution, so
the map is differentiable in the attribution (and the parameters) with the
region choice held fixed, as for max pooling.

References:
  Kapishnikov et al., XRAI: better attributions through regions (ICCV 2019).
  Felzenszwalb and Huttenlocher, Efficient graph-based image segmentation (IJCV 2004).
  PAIR saliency, https://github.com/PAIR-code/saliency.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.hyper import check_choice, check_chunk, check_count, check_nonnegative
from jaxsal.interpreters.base import interpreter
from jaxsal.interpreters.gradient import simple_grad
from jaxsal.interpreters.noise import over_samples

FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)  # PAIR's defaults, from here on
FELZENSZWALB_SIGMA = 0.8
FELZENSZWALB_MIN_SIZE = 150
FELZENSZWALB_RESIZE = (224, 224)
ALGORITHMS = ("full", "fast")


def image_segments(im: np.ndarray, *, resize=True, value_range=(-1.0, 1.0), dilation_radius=5):
    """PAIR's `_get_segments_felzenszwalb` for one (H, W, C) image: a list of (H, W) masks."""
    from skimage import segmentation
    from skimage.morphology import dilation, disk
    from skimage.transform import resize as sk_resize

    shape = im.shape[:2]
    im = (im - im.min()) / (im.max() - im.min())
    im = im * (value_range[1] - value_range[0]) + value_range[0]
    if resize:
        im = sk_resize(im, FELZENSZWALB_RESIZE, order=3, mode="constant", preserve_range=True,
                       anti_aliasing=True)  # fmt: skip
    masks = []
    for scale in FELZENSZWALB_SCALES:
        seg = segmentation.felzenszwalb(
            im, scale=scale, sigma=FELZENSZWALB_SIGMA, min_size=FELZENSZWALB_MIN_SIZE
        )
        if resize:
            seg = sk_resize(seg, shape, order=0, preserve_range=True, mode="constant",
                            anti_aliasing=False).astype(int)  # fmt: skip
        masks += [seg == label for label in range(seg.min(), seg.max() + 1)]
    if dilation_radius:
        masks = [dilation(m, footprint=disk(dilation_radius)) for m in masks]
    return masks


def xrai_segments(x, *, resize=True, value_range=(-1.0, 1.0), dilation_radius=5) -> np.ndarray:
    """PAIR's default XRAI segmentation of each image, on the host (scikit-image).

    Per image: values scaled to `value_range`, resized to 224x224 (cubic,
    anti-aliased), Felzenszwalb segments at scales 50, 100, 150, 250, 500,
    1200 (sigma 0.8, min size 150), resized back (nearest), one mask per label
    and scale in that order, each dilated by a disk of radius 5.

    Args:
      x: NHWC batch (concrete; not under jit).
      resize: segment at 224x224 as PAIR does (True).
      value_range: the value range the image is scaled to first ((-1, 1)).
      dilation_radius: disk radius of the dilation (5; 0 for none).

    Returns:
      Boolean masks (N, M, H, W); images with fewer than M segments are
      padded with empty masks (XRAI skips them).
    """
    if isinstance(x, jax.core.Tracer):
        raise TypeError("xrai_segments runs scikit-image on the host: call it outside jax.jit")
    x = np.asarray(x, np.float64)
    if x.ndim != 4:
        raise ValueError(f"x must be an NHWC batch, got shape {x.shape}; add an axis with x[None]")
    per_image = [image_segments(im, resize=resize, value_range=value_range,
                                dilation_radius=dilation_radius) for im in x]  # fmt: skip
    out = np.zeros((len(x), max(map(len, per_image))) + x.shape[1:3], bool)
    for i, masks in enumerate(per_image):
        out[i, : len(masks)] = masks
    return out


def pair_ig(params, x, c, baselines, steps: int, chunk):
    """PAIR's IG: mean over baselines of (x - b) / steps * sum of gradients at linspace(0, 1, steps)."""
    alphas = jnp.asarray(np.linspace(0.0, 1.0, steps), x.dtype)[:, None, None, None, None]
    total = jnp.zeros_like(x)
    for b in baselines:
        path = b[None] + alphas * (x - b)[None]
        grads = over_samples(lambda p, cp: simple_grad(params, p, cp), path, c, chunk)
        total = total + grads.sum(axis=0) * (x - b) / steps
    return total / len(baselines)


def greedy_full(attr, masks, area_threshold, min_pixel_diff):
    """Region index of each pixel (M: not covered) by PAIR's `_xrai`, for one image (flat)."""
    m, p = masks.shape

    def body(state):
        covered, alive, region, step = state
        diff = masks & ~covered[None]
        count = diff.sum(axis=1)
        alive = alive & (count >= min_pixel_diff)
        gain = jnp.where(alive, (diff * attr[None]).sum(axis=1) / jnp.maximum(count, 1), -jnp.inf)
        best = jnp.argmax(gain)  # the first of equal gains, as PAIR's strict '>'
        found = alive.any()
        region = jnp.where(found & diff[best], step, region)
        covered = covered | (found & masks[best])
        return covered, alive.at[best].set(False), region, step + 1

    def cond(state):
        covered, alive, _, step = state
        return alive.any() & (covered.mean(dtype=attr.dtype) <= area_threshold) & (step < m)

    init = (jnp.zeros(p, bool), jnp.ones(m, bool), jnp.full(p, m), jnp.asarray(0))
    return jax.lax.while_loop(cond, body, init)[2]


def greedy_fast(attr, masks, min_pixel_diff):
    """PAIR's `_xrai_fast`: segments in order of their whole-mask density, overlaps ignored."""
    m, p = masks.shape
    count = masks.sum(axis=1)
    density = jnp.where(
        count > 0, (masks * attr[None]).sum(axis=1) / jnp.maximum(count, 1), -jnp.inf
    )
    order = jnp.argsort(-density, stable=True)

    def add(state, k):
        covered, region = state
        diff = masks[order[k]] & ~covered
        ok = diff.sum() >= min_pixel_diff
        return (covered | (ok & masks[order[k]]), jnp.where(ok & diff, k, region)), None

    return jax.lax.scan(add, (jnp.zeros(p, bool), jnp.full(p, m)), jnp.arange(m))[0][1]


def region_means(attr, region, m: int):
    """Each pixel painted with the mean attribution of its region (differentiable in attr)."""
    total = jax.ops.segment_sum(attr, region, num_segments=m + 1)
    count = jax.ops.segment_sum(jnp.ones_like(attr), region, num_segments=m + 1)
    return (total / jnp.maximum(count, 1.0))[region]


def _validate(method, x, key, hyper):
    """Segments, algorithm, counts and the IG inputs, before anything runs."""
    n, h, w = x.shape[:3]
    segments = hyper["segments"]
    if segments is None:
        raise ValueError(
            f"{method} needs segments=: boolean masks (N, M, H, W); PAIR's default segmentation "
            "is jaxsal.interpreters.xrai.xrai_segments(x), computed on the host before the call"
        )
    shape = tuple(getattr(segments, "shape", ()))
    if len(shape) != 4 or shape[0] != n or shape[2:] != (h, w):
        raise ValueError(
            f"{method}: segments must have shape (N, M, H, W) = ({n}, M, {h}, {w}), got {shape}; "
            "xrai_segments(x) gives that layout"
        )
    check_choice(hyper["algorithm"], "algorithm", method, ALGORITHMS)
    pixels = check_count(hyper["min_pixel_diff"], "min_pixel_diff", method, example=50)
    check_nonnegative(hyper["area_threshold"], "area_threshold", method)
    steps = check_count(hyper["steps"], "steps", method, example=100)
    chunk = check_chunk(hyper["chunk"], steps, "steps", method, x.shape, x.dtype)
    attribution = hyper["attribution"]
    if attribution is not None and tuple(attribution.shape) != tuple(x.shape):
        raise ValueError(
            f"{method}: attribution must have the shape of x {tuple(x.shape)}, got "
            f"{tuple(attribution.shape)}"
        )
    baselines = hyper["baselines"]
    if baselines is not None:
        b = tuple(getattr(baselines, "shape", ()))
        try:
            ok = len(b) >= 1 and jnp.broadcast_shapes(b, b[:1] + x.shape) == b[:1] + x.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{method}: baselines must be an array (B, ...) broadcastable to (B,) + x.shape "
                f"= (B, {', '.join(map(str, x.shape))}), got shape {b}; e.g. "
                "jnp.stack([x.min(), x.max()])[:, None, None, None, None]"
            )
    return key, {**hyper, "min_pixel_diff": pixels, "steps": steps, "chunk": chunk}


@interpreter(
    static=("steps", "algorithm", "chunk", "min_pixel_diff"), validate=_validate, chunk_of="steps"
)
def xrai(
    params, x, c, *, key=None, segments=None, attribution=None, baselines=None, steps=100,
    area_threshold=1.0, min_pixel_diff=50, algorithm="full", chunk="auto",
):  # fmt: skip
    """XRAI: the density of IG attribution over greedily chosen segments (PAIR's `XRAI`).

    The attribution (by default IG from a black and a white baseline, each
    image's own minimum and maximum value, averaged; `steps` gradients at
    linspace(0, 1, steps) each, PAIR's rule) is reduced over channels by max.
    "full": repeatedly, among segments adding at least `min_pixel_diff`
    uncovered pixels, the one whose uncovered pixels have the highest mean
    attribution is added and those pixels get that mean, until none is left or
    the covered share exceeds `area_threshold`; "fast": segments in order of
    their own mean, overlaps ignored. Pixels left uncovered get their mean.

    Args:
      params: a `ModelParams`.
      x: NHWC batch.
      c: class index, an int or one per image.
      key: unused.
      segments: boolean masks (N, M, H, W), e.g. `xrai_segments(x)` (PAIR's
        default segmentation, computed on the host); required.
      attribution: optional precomputed attribution of the shape of x (IG is
        then not run), e.g. from `jaxsal.integrated_gradients`.
      baselines: IG baselines (B, ...) broadcastable to (B,) + x.shape (default
        each image's min and max, PAIR's).
      steps: IG steps per baseline (100, PAIR's XRAIParameters).
      area_threshold: stop once this share of the image is covered ("full"; 1.0).
      min_pixel_diff: least number of new pixels for a segment to count (50).
      algorithm: "full" (default) or "fast".
      chunk: IG steps per model call: "auto" (default), an int dividing
        `steps`, or None (all at once); the result does not depend on it.

    Returns:
      The XRAI map, shape (N, H, W, 1).

    References:
      Kapishnikov et al., XRAI: better attributions through regions (ICCV 2019).
    """
    del key
    n, h, w = x.shape[:3]
    if attribution is None:
        if baselines is None:
            axes = (1, 2, 3)
            baselines = [jnp.broadcast_to(f(x, axis=axes, keepdims=True), x.shape)
                         for f in (jnp.min, jnp.max)]  # fmt: skip
        else:
            baselines = list(jnp.broadcast_to(baselines, baselines.shape[:1] + x.shape))
        attribution = pair_ig(params, x, c, baselines, steps, chunk)
    attr = attribution.max(axis=-1).reshape(n, h * w)
    masks = segments.astype(bool).reshape(n, segments.shape[1], h * w)
    fixed = jax.lax.stop_gradient(attr)
    if algorithm == "full":
        region = jax.vmap(greedy_full, (0, 0, None, None))(
            fixed, masks, area_threshold, min_pixel_diff
        )
    else:
        region = jax.vmap(greedy_fast, (0, 0, None))(fixed, masks, min_pixel_diff)
    painted = jax.vmap(region_means, (0, 0, None))(attr, region, masks.shape[1])
    return painted.reshape(n, h, w, 1)
