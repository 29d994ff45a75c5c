"""The fooling objective: heatmaps, penalties and test losses as pure functions of the params.

`Fooling` names one fooling run (the kind of fooling, the method of the
method table it fools, `jaxsal.methods`, and the weight lambda). Every
function here is a pure function of `(params, batch, params0, fooling)`:
`params` the model being fine-tuned, `batch` a dict of arrays, `params0` the
frozen original: the training engine's loss signature (`jaxsal.train`), so
the whole step (forward, interpreter, penalty, second-order gradient,
update) is one jitted function, sharded over devices.

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
    logit_floor_penalty,
    topk_penalty,
)
from jaxsal.methods import METHODS, Method, method
from jaxsal.params import ModelParams
from jaxsal.train import cross_entropy

KINDS = ("location", "topk", "center_mass", "active")


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
      keep_logits: active fooling only, not in the paper: weight of
        `logit_floor_penalty` on the composites' logits of the two classes,
        added to the swap penalty (0, the default, is the paper's objective).
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
    keep_logits: float = 0.0

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
        if self.keep_logits < 0:
            raise ValueError(f"keep_logits must be >= 0, got {self.keep_logits}")
        if self.keep_logits and self.kind != "active":
            raise ValueError(
                f"keep_logits applies to active fooling only (this fooling is {self.kind}); "
                "leave it at 0"
            )

    @property
    def name(self) -> str:
        """A short label such as "location/gradcam"."""
        return f"{self.kind}/{self.method}"

    @property
    def interval(self) -> tuple[float, float]:
        """The FSR interval R_I of this kind of fooling."""
        return FSR_INTERVALS[self.kind]

    def method_of(self, name: str | None = None) -> Method:
        """The table's method `name` (default: the fooled one) with this fooling's settings."""
        return method(name or self.method).using(
            layer=self.layer, composite=self.composite, samples=self.samples,
            noise_level=self.noise_level,
        )  # fmt: skip


def heatmap_of(
    params: ModelParams, x: jax.Array, c, fooling: Fooling, method: str | None = None, key=None
) -> jax.Array:
    """The fooling paper's heatmap (N, h, w, 1) of `fooling`'s method (or another), differentiable.

    The method comes from the table (`jaxsal.methods`) with the settings of
    `fooling` (layer, composite, SmoothGrad samples and noise): Grad-CAM:
    relu(cam) / max; LRP_T: relu(sum_c R), min-max; LRP: sum_c R (signed,
    unnormalised; the input-level Location penalty divides by the batch
    maximum); SimpleGrad and SmoothGrad: sum_c |g| / total; SimpleGrad_T:
    2 sum_c |g|, min-max. `key` is needed by stochastic methods (SmoothGrad).
    """
    c = jnp.broadcast_to(jnp.asarray(c), (x.shape[0],))
    return fooling.method_of(method).heatmap_of(params, x, c, key=key)


def _key(fooling: Fooling, batch: Mapping[str, jax.Array]) -> jax.Array:
    key = jax.random.key(fooling.seed)
    if "index" in batch:
        key = jax.random.fold_in(key, jnp.asarray(batch["index"]).reshape(-1)[0])
    return key


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
    batch: Mapping[str, jax.Array],
    params0: ModelParams,
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
      Active: the swapped-maps MSE on `batch["fool_image"]` (plus
      `keep_logits * logit_floor_penalty` of the two classes' logits there).
    """
    params0 = jax.lax.stop_gradient(params0)
    key = _key(fooling, batch) if fooling.method_of().stochastic else None
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
        lf = active_penalty(h1, h2, o1, o2)
        if fooling.keep_logits:
            pair = jnp.asarray(fooling.classes)
            z, z0 = params.apply(xf)[:, pair], params0.apply(xf)[:, pair]
            lf = lf + fooling.keep_logits * logit_floor_penalty(z, z0)
        return lf
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
    batch: Mapping[str, jax.Array],
    params0: ModelParams,
    *,
    fooling: Fooling,
    inputs: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The objective `CE + lam * L_F` and its parts, with the training engine's loss signature.

    Bind `fooling` (`functools.partial(loss, fooling=f)`) to get
    `loss_fn(params, batch, frozen)` for `jaxsal.train.fit`, the frozen
    arrays being the original model.

    Args:
      params: the model being fine-tuned (inference mode: BatchNorm uses its
        running statistics; no dropout).
      batch: see the module docstring.
      params0: the frozen original.
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
    ce = cross_entropy(logits, y).mean()
    lf = penalty(params, batch, params0, fooling)
    total = ce + fooling.lam * lf
    accuracy = (logits.argmax(-1) == y).mean()
    return total, {"loss": total, "ce": ce, "penalty": lf, "accuracy": accuracy}


def test_losses(
    params: ModelParams,
    batch: Mapping[str, jax.Array],
    params0: ModelParams,
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
    if fooling.method_of(method).stochastic and key is None:
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
    h0 = None if fooling.kind == "location" else heatmap_of(params0, x, y, fooling, method, key)
    return losses_from_maps(fooling, h, h0, method=method)


def losses_from_maps(
    fooling: Fooling, h: jax.Array, h0: jax.Array | None, *, method: str | None = None
) -> jax.Array:
    """The per-image test losses of a passive fooling from the maps of both models, (N,).

    `h` are the maps of the model tested, `h0` the original's (unused by
    Location), both from `heatmap_of(..., method)`: so the maps of a data set
    can be computed once and every kind's test derived from them.
    """
    method = method or fooling.method
    if fooling.kind == "location":
        if method == "lrp":  # per image: the batch-max scaling of the penalty, one image at a time
            return _lrp_location(h / h.max(axis=(1, 2, 3), keepdims=True))
        return location_test_loss(h)
    if fooling.kind == "topk":
        return topk_test_loss(h, h0, fraction=fooling.fraction)
    if fooling.kind == "center_mass":
        return center_mass_score(h, h0)
    raise ValueError("active fooling's test needs the maps of both classes: active_test_loss")


def _lrp_location(h: jax.Array) -> jax.Array:
    """Location test loss of input-level LRP maps already scaled by their own maximum."""
    _, height, width, _ = h.shape
    m = jnp.asarray(location_mask(height, width, centre=-1.0), h.dtype).reshape(1, height, width, 1)
    return ((m - h) ** 2).mean(axis=(1, 2, 3))


def fsr(losses: jax.Array, fooling: Fooling, interval: tuple[float, float] | None = None):
    """The Fooling Success Rate of per-image test losses, with the interval of `fooling`'s kind."""
    return fooling_success_rate(losses, interval or fooling.interval)
