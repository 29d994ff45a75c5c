"""The fooling objective: heatmaps, penalties and test losses as pure functions of the params.

`Fooling` names one fooling run (the kind of fooling, the interpreter it
fools and the weight lambda). Every function here is a pure function of
`(params, params0, batch, fooling)`: `params` the model being fine-tuned,
`params0` the frozen original, `batch` a dict of arrays. So the whole step
(forward, interpreter, penalty, second-order gradient, update) can be one
jitted function, sharded over devices by `jaxsal.fooling.trainer`.

Batches:
- passive foolings (Location, Top-k, Center-mass): `{"image", "label"}`;
  the penalty explains the true label on the same images the cross-entropy
  sees (the paper's D_fool = D).
- active fooling: `{"image", "label", "fool_image"}`; the cross-entropy keeps
  using the ordinary images, the penalty swaps the maps of the two classes
  `fooling.classes` on the composites `fool_image`.
- SmoothGrad heatmaps draw their noise from `fooling.seed`, folded with
  `batch["index"][0]` when the batch has an "index" (so every step sees new noise).

References:
  Heo et al., Fooling neural network interpretations via adversarial model
  manipulation, NeurIPS 2019, sections 3 and 4.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from jaxsal.fooling.metrics import (
    FSR_INTERVALS,
    active_test_loss,
    center_mass_score,
    fooling_success_rate,
    location_test_loss,
    topk_test_loss,
)
from jaxsal.fooling.penalties import (
    active_penalty,
    center_mass_penalty,
    location_mask,
    location_penalty,
    topk_penalty,
)
from jaxsal.interpreters import gradcam, simple_grad, simple_grad_t, smoothgrad
from jaxsal.lrp.attribution import relevance
from jaxsal.params import ModelParams
from jaxsal.postprocess import (
    gradcam_heatmap,
    lrp_t_heatmap,
    reduce_channels,
    simple_grad_heatmap,
    simple_grad_t_heatmap,
)

KINDS = ("location", "topk", "center_mass", "active")
METHODS = ("gradcam", "lrp_t", "lrp", "simple_grad", "simple_grad_t", "smoothgrad")


@dataclasses.dataclass(frozen=True)
class Fooling:
    """One fooling: which penalty, on which interpreter's heatmap, with which weight.

    Attributes:
      kind: "location", "topk", "center_mass" or "active".
      method: the interpreter fooled: "gradcam", "lrp_t" (LRP at the target
        layer), "lrp" (LRP at the input), "simple_grad" (|gradient| at the
        input, normalised to sum 1), "simple_grad_t" or "smoothgrad"
        (SimpleGrad's map of the SmoothGrad average).
      lam: the weight lambda of the penalty in `CE + lam * L_F`.
      layer: target layer of the layer-level methods (an alias or a path).
      classes: (c1, c2) of the active fooling (required there, unused otherwise).
      fraction: share of pixels of the Top-k fooling.
      composite: LRP composite of "lrp" and "lrp_t".
      samples: SmoothGrad samples.
      noise_level: SmoothGrad noise, a fraction of each image's value range.
      seed: seed of the SmoothGrad noise.
    """

    kind: str = "location"
    method: str = "gradcam"
    lam: float = 1.0
    layer: str = "target"
    classes: tuple[int, int] | None = None
    fraction: float = 0.1
    composite: str = "paper"
    samples: int = 8
    noise_level: float = 0.15
    seed: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'unknown fooling kind "{self.kind}"; use one of {", ".join(KINDS)}')
        if self.method not in METHODS:
            raise ValueError(
                f'unknown fooling method "{self.method}"; use one of {", ".join(METHODS)}'
            )
        if self.kind == "active":
            if self.classes is None or len(self.classes) != 2:
                raise ValueError("active fooling needs classes=(c1, c2), the two classes to swap")
            if self.classes[0] == self.classes[1]:
                raise ValueError(f"active fooling needs two different classes, got {self.classes}")
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")

    @property
    def name(self) -> str:
        """A short label such as "location/gradcam"."""
        return f"{self.kind}/{self.method}"

    @property
    def interval(self) -> tuple[float, float]:
        """The FSR interval R_I of this kind of fooling."""
        return FSR_INTERVALS[self.kind]


def fooling_heatmap(
    params: ModelParams,
    x: jax.Array,
    c: jax.Array,
    *,
    method: str,
    layer: str = "target",
    composite: str = "paper",
    key: jax.Array | None = None,
    samples: int = 8,
    noise_level: float = 0.15,
) -> jax.Array:
    """The fooling paper's heatmap of one interpreter, shape (N, h, w, 1), differentiable.

    Args:
      params: the model.
      x: NHWC batch.
      c: class per image, shape (N,) (or an int).
      method: one of `METHODS` (see `Fooling`).
      layer: the target layer of "gradcam", "lrp_t" and "simple_grad_t".
      composite: LRP composite of "lrp" and "lrp_t".
      key: PRNG key of "smoothgrad".
      samples: SmoothGrad samples.
      noise_level: SmoothGrad noise level.

    Returns:
      Grad-CAM: relu(cam) / max; LRP_T: relu(sum_c R), min-max; LRP: sum_c R
      (signed, unnormalised; the input-level Location penalty divides by the
      batch maximum); SimpleGrad and SmoothGrad: sum_c |g| / total;
      SimpleGrad_T: 2 sum_c |g|, min-max.
    """
    c = jnp.broadcast_to(jnp.asarray(c), (x.shape[0],))
    if method == "gradcam":
        return gradcam_heatmap(gradcam(params, x, c, layer=layer))
    if method == "lrp_t":
        return lrp_t_heatmap(relevance(params, x, c, composite=composite, layer=layer))
    if method == "lrp":
        return reduce_channels(relevance(params, x, c, composite=composite), "sum")
    if method == "simple_grad":
        return simple_grad_heatmap(simple_grad(params, x, c))
    if method == "simple_grad_t":
        return simple_grad_t_heatmap(simple_grad_t(params, x, c, layer=layer))
    if method == "smoothgrad":
        if key is None:
            key = jax.random.key(0)
        g = smoothgrad(params, x, c, key=key, samples=samples, noise_level=noise_level)
        return simple_grad_heatmap(g)
    raise ValueError(f'unknown fooling method "{method}"; use one of {", ".join(METHODS)}')


def _key(fooling: Fooling, batch: Mapping[str, jax.Array]) -> jax.Array:
    key = jax.random.key(fooling.seed)
    if "index" in batch:
        key = jax.random.fold_in(key, jnp.asarray(batch["index"]).reshape(-1)[0])
    return key


def heatmap_of(
    params: ModelParams, x: jax.Array, c, fooling: Fooling, method: str | None = None, key=None
) -> jax.Array:
    """`fooling_heatmap` with the interpreter settings of `fooling` (or another method)."""
    return fooling_heatmap(
        params, x, c, method=method or fooling.method, layer=fooling.layer,
        composite=fooling.composite, key=key, samples=fooling.samples,
        noise_level=fooling.noise_level,
    )  # fmt: skip


def _labels(batch: Mapping[str, jax.Array]) -> jax.Array:
    y = jnp.asarray(batch["label"])
    if y.ndim != 1:
        raise ValueError(
            f"batch['label'] must hold one integer class per image (shape (N,)), got {y.shape}; "
            "active fooling takes its two classes from Fooling.classes"
        )
    return y


def penalty(
    params: ModelParams,
    params0: ModelParams,
    batch: Mapping[str, jax.Array],
    fooling: Fooling,
) -> jax.Array:
    """The fooling loss L_F of `fooling` on a batch (a scalar).

    Args:
      params: the model being fooled.
      params0: the frozen original model (no gradient flows into it).
      batch: see the module docstring.
      fooling: the fooling.

    Returns:
      Location: mean (m - h)^2 to the frame mask (input-level LRP: the -1
      centre variant); Top-k: mean squared normalised map on the original's
      top pixels; Center-mass: minus the L1 shift of the centre of mass;
      Active: the swapped-maps MSE on `batch["fool_image"]`.
    """
    params0 = jax.lax.stop_gradient(params0)
    key = _key(fooling, batch) if fooling.method == "smoothgrad" else None
    if fooling.kind == "active":
        if "fool_image" not in batch:
            raise ValueError('active fooling needs batch["fool_image"], the two-class composites')
        xf = batch["fool_image"]
        c1, c2 = (jnp.full((xf.shape[0],), k, jnp.int32) for k in fooling.classes)
        h1, h2 = (
            heatmap_of(params, xf, c1, fooling, key=key),
            heatmap_of(params, xf, c2, fooling, key=key),
        )
        o1, o2 = (
            heatmap_of(params0, xf, c1, fooling, key=key),
            heatmap_of(params0, xf, c2, fooling, key=key),
        )
        return active_penalty(h1, h2, o1, o2)
    x, y = batch["image"], _labels(batch)
    h = heatmap_of(params, x, y, fooling, key=key)
    if fooling.kind == "location":
        return location_penalty(h, input_lrp=fooling.method == "lrp")
    h0 = heatmap_of(params0, x, y, fooling, key=key)
    if fooling.kind == "topk":
        return topk_penalty(h, h0, fraction=fooling.fraction)
    return center_mass_penalty(h, h0)


def loss(
    params: ModelParams,
    params0: ModelParams,
    batch: Mapping[str, jax.Array],
    fooling: Fooling,
    *,
    inputs: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The objective `CE + lam * L_F` and its parts.

    Args:
      params: the model being fine-tuned (inference mode: BatchNorm uses its
        running statistics; no dropout).
      params0: the frozen original.
      batch: see the module docstring.
      fooling: the fooling.
      inputs: the images the cross-entropy (and accuracy) is taken on, e.g.
        adversarial examples of the batch; default `batch["image"]`. The
        penalty always uses the batch.

    Returns:
      (total, {"loss", "ce", "penalty", "accuracy"}), each a scalar.
    """
    x = batch["image"] if inputs is None else inputs
    y = _labels(batch)
    logits = params.apply(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    lf = penalty(params, params0, batch, fooling)
    total = ce + fooling.lam * lf
    accuracy = (logits.argmax(-1) == y).mean()
    return total, {"loss": total, "ce": ce, "penalty": lf, "accuracy": accuracy}


def test_losses(
    params: ModelParams,
    params0: ModelParams,
    batch: Mapping[str, jax.Array],
    fooling: Fooling,
    *,
    method: str | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """The per-image test loss t_i of a fooling, measured with any interpreter, shape (N,).

    Location: the per-image Location penalty; Top-k: the per-image Top-k
    penalty; Center-mass: the normalised centre shift in [0, 1]; Active:
    the mean Spearman correlation of each class's fooled map with the other
    class's original map (on `batch["fool_image"]`). Passing `method` other
    than `fooling.method` measures transfer to that interpreter.
    """
    method = method or fooling.method
    if method == "smoothgrad" and key is None:
        key = _key(fooling, batch)
    if fooling.kind == "active":
        xf = batch["fool_image"]
        c1, c2 = (jnp.full((xf.shape[0],), k, jnp.int32) for k in fooling.classes)
        maps = [
            heatmap_of(p, xf, c, fooling, method, key) for p in (params, params0) for c in (c1, c2)
        ]
        return active_test_loss(*maps)
    x, y = batch["image"], _labels(batch)
    h = heatmap_of(params, x, y, fooling, method, key)
    if fooling.kind == "location":
        if method == "lrp":  # per image: the batch-max scaling of the penalty, one image at a time
            return _lrp_location(h / h.max(axis=(1, 2, 3), keepdims=True))
        return location_test_loss(h)
    h0 = heatmap_of(params0, x, y, fooling, method, key)
    if fooling.kind == "topk":
        return topk_test_loss(h, h0, fraction=fooling.fraction)
    return center_mass_score(h, h0)


def _lrp_location(h: jax.Array) -> jax.Array:
    """Location test loss of input-level LRP maps already scaled by their own maximum."""
    _, height, width, _ = h.shape
    m = jnp.asarray(location_mask(height, width, centre=-1.0), h.dtype).reshape(1, height, width, 1)
    return ((m - h) ** 2).mean(axis=(1, 2, 3))


def fsr(losses: jax.Array, fooling: Fooling, interval: tuple[float, float] | None = None):
    """The Fooling Success Rate of per-image test losses, with the interval of `fooling`'s kind."""
    return fooling_success_rate(losses, interval or fooling.interval)
