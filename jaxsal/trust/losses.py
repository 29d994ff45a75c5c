"""The trustworthy-CNN loss of Halliwell & Lecue (eq. 4-10), differentiable to second order.

The saliency map of the true class is computed inside the loss with the
method table's Grad-CAM or Guided Grad-CAM (`jaxsal.methods`), so `jax.grad`
of the loss differentiates through the map (a gradient of a gradient). Maps are brought into [0, 1] per image by
dividing by their maximum, so S (their mean, eq. 4) lies in [0, 1] as the paper
requires.

Per image i, with CE_i the cross-entropy and S_i the mean saliency, both divided
by `scale` (the number of classes, the paper's footnote 2):

    L_i = lambda * CE_i + (1 - lambda) * S_i + R1_i + R2_i
    R1_i = CE_i * (1 - S_i),  R2_i = S_i * (1 - CE_i)              (eq. 5-7)

The planned variant (eq. 8-10) replaces S_i by PWCE_i, the pixel-wise binary
cross-entropy between a ground-truth map (here built from a bounding box) and
the predicted map, also divided by `scale`. The loss is the mean over the batch
(the paper's sum divided by n, i.e. the learning rate scaled by 1/n).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxsal.methods import method
from jaxsal.metrics import box_coverage
from jaxsal.params import ModelParams
from jaxsal.train import cross_entropy

METHODS = ("gradcam", "guided_gradcam")
EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class TrustConfig:
    """What the trustworthy loss computes (static: it is part of the jitted program).

    Attributes:
      method: "gradcam" or "guided_gradcam" (the saliency inside the loss), or
        None for the baseline: plain mean cross-entropy (the paper's eq. 1).
      layer: Grad-CAM's layer (torchvision path or alias, e.g. "last_conv").
      lam: lambda of eq. 7 in [0, 1].
      use_r1: keep R1 (False: the ablation R1 = 0).
      use_r2: keep R2 (False: the ablation R2 = 0).
      ground_truth: use PWCE to a ground-truth box map instead of S (eq. 8-10).
      scale: divisor of CE and S (or PWCE); None: the model's number of classes.
    """

    method: str | None = "gradcam"
    layer: str = "last_conv"
    lam: float = 0.9
    use_r1: bool = True
    use_r2: bool = True
    ground_truth: bool = False
    scale: float | None = None

    def __post_init__(self):
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f'unknown saliency method "{self.method}"; use one of {METHODS}')
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam (lambda of eq. 7) must lie in [0, 1], got {self.lam}")

    @property
    def name(self) -> str:
        if self.method is None:
            return "baseline"
        parts = [self.method, "pwce" if self.ground_truth else None]
        parts += [None if self.use_r1 else "r1=0", None if self.use_r2 else "r2=0"]
        return " ".join(p for p in parts if p)


def normalize_max(maps: jax.Array) -> jax.Array:
    """Each (N, ...) map divided by its maximum (maps are non-negative), into [0, 1]."""
    peak = jnp.max(maps.reshape(maps.shape[0], -1), axis=1)
    return maps / (peak + EPS).reshape((-1,) + (1,) * (maps.ndim - 1))


def saliency(params: ModelParams, x: jax.Array, y: jax.Array, *, method: str, layer: str):
    """The true class's saliency map in [0, 1], shape (N, h, w).

    Grad-CAM (eq. 2-3) at `layer`'s resolution; Guided Grad-CAM at the input's
    resolution, as the absolute value summed over input channels. Each map is
    divided by its maximum.

    Args:
      params: the model.
      x: NHWC input batch.
      y: (N,) true classes.
      method: "gradcam" or "guided_gradcam".
      layer: Grad-CAM's layer.

    Returns:
      (N, h, w) maps in [0, 1], differentiable with respect to `params`.
    """
    if method not in METHODS:
        raise ValueError(f'unknown saliency method "{method}"; use one of {METHODS}')
    raw = _method(method, layer)(params, x, y)
    m = raw[..., 0] if method == "gradcam" else jnp.abs(raw).sum(-1)
    return normalize_max(m)


def _method(name: str, layer: str):
    return method(name, layer=layer)


def pixelwise_cross_entropy(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Mean over pixels of the binary cross-entropy of `pred` against `target`, (N,).

    PWCE of eq. 8-10: -mean_hw [G log P + (1 - G) log(1 - P)], P clipped to
    [1e-6, 1 - 1e-6].
    """
    p = jnp.clip(pred, EPS, 1.0 - EPS)
    bce = -(target * jnp.log(p) + (1.0 - target) * jnp.log(1.0 - p))
    return bce.reshape(bce.shape[0], -1).mean(axis=1)


def terms(ce: jax.Array, s: jax.Array, *, lam: float, use_r1=True, use_r2=True) -> dict:
    """The per-image terms of eq. 7 from scaled CE_i and S_i (or PWCE_i).

    Returns:
      {"ce", "s", "r1", "r2", "loss"}, each (N,): loss = lam ce + (1 - lam) s + r1 + r2.
    """
    r1 = ce * (1.0 - s) if use_r1 else jnp.zeros_like(ce)
    r2 = s * (1.0 - ce) if use_r2 else jnp.zeros_like(ce)
    loss = lam * ce + (1.0 - lam) * s + r1 + r2
    return {"ce": ce, "s": s, "r1": r1, "r2": r2, "loss": loss}


def trust_terms(
    params: ModelParams, x: jax.Array, y: jax.Array, box=None, *, config: TrustConfig
) -> dict[str, jax.Array]:
    """Per-image terms of the trustworthy loss (eq. 7, or eq. 10 with a box).

    Args:
      params: the model.
      x: NHWC batch.
      y: (N,) true classes.
      box: (N, 4) half-open boxes, needed when `config.ground_truth`.
      config: the loss.

    Returns:
      {"ce", "s", "r1", "r2", "loss", "logits"}: scaled per-image terms, (N,) each.
    """
    logits = params.apply(x)
    ce = cross_entropy(logits, y)
    if config.method is None:
        zeros = jnp.zeros_like(ce)
        return {"ce": ce, "s": zeros, "r1": zeros, "r2": zeros, "loss": ce, "logits": logits}
    scale = config.scale or params.num_classes
    maps = saliency(params, x, y, method=config.method, layer=config.layer)
    if config.ground_truth:
        if box is None:
            raise ValueError("ground_truth=True (eq. 8-10) needs boxes: pass box=(N, 4) array")
        s = pixelwise_cross_entropy(box_coverage(box, x.shape[1:3], maps.shape[1:3]), maps)
    else:
        s = maps.reshape(maps.shape[0], -1).mean(axis=1)
    out = terms(ce / scale, s / scale, lam=config.lam, use_r1=config.use_r1, use_r2=config.use_r2)
    return {**out, "logits": logits}


def trust_loss(params: ModelParams, batch, frozen=None, *, config: TrustConfig):
    """The batch mean of the trustworthy loss, with the training engine's signature.

    Bind `config` (`functools.partial(trust_loss, config=c)`) to get
    `loss_fn(params, batch, frozen)` for `jaxsal.train.fit`.

    Args:
      params: the model.
      batch: {"image", "label"} and "box" for the ground-truth variant (eq. 8-10).
      frozen: unused.
      config: the loss.

    Returns:
      (loss, {"ce", "s", "r1", "r2", "accuracy"}): batch means.

    References:
      Halliwell & Lecue, Trustworthy convolutional neural networks: a
      gradient penalized-based approach, eq. 4-10.
    """
    del frozen
    t = trust_terms(params, batch["image"], batch["label"], batch.get("box"), config=config)
    aux = {k: t[k].mean() for k in ("ce", "s", "r1", "r2")}
    aux["accuracy"] = (jnp.argmax(t["logits"], -1) == batch["label"]).mean()
    return t["loss"].mean(), aux
