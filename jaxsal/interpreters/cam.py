"""Grad-CAM and Guided Grad-CAM.

Reference:
  Selvaraju et al., Grad-CAM: visual explanations from deep networks via
  gradient-based localization (2017).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.forward import class_grads, resolve_layer
from jaxsal.hyper import check_choice
from jaxsal.interpreters.base import interpreter
from jaxsal.interpreters.guided import guided, rectified_grads
from jaxsal.postprocess import upsample


def cam_from(acts: jax.Array, grads: jax.Array, relu: bool = True) -> jax.Array:
    """sum_k mean_hw(dlogit/dA_k) A_k, optionally rectified, keepdims on channels."""
    if acts.ndim != 4:
        raise ValueError(
            f"Grad-CAM needs a spatial layer (N, h, w, C); this layer gives shape {acts.shape}"
        )
    alpha = grads.mean(axis=(1, 2), keepdims=True)
    cam = jnp.sum(alpha * acts, axis=-1, keepdims=True)
    return jax.nn.relu(cam) if relu else cam


INTERPOLATIONS = ("nearest", "bilinear")


def _validate(method, x, key, hyper):
    """`relu` a bool, `interpolation` a known mode (the layer is checked by the decorator)."""
    if "relu" in hyper and not isinstance(hyper["relu"], bool):
        raise TypeError(f"{method}: relu must be True or False, got {hyper['relu']!r}")
    if "interpolation" in hyper:
        check_choice(hyper["interpolation"], "interpolation", method, INTERPOLATIONS)
    return key, hyper


@interpreter(static=("layer", "relu"), validate=_validate)
def gradcam(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """Grad-CAM at a named layer, at that layer's resolution.

    Args:
      layer: torchvision path or alias; default the fooling paper's target layer.
      relu: rectify the map (Grad-CAM's definition); False keeps the signed sum.

    Returns:
      The map, shape (N, h, w, 1). `jaxsal.postprocess.gradcam_heatmap`
      applies the fooling paper's normalisation; `upsample` brings it to the
      input's size.
    """
    del key
    name = resolve_layer(params, layer)
    _, _, acts, grads = class_grads(params, x, c, layers=(name,), wrt_input=False)
    return cam_from(acts[name], grads[name], relu)


@interpreter(static=("layer", "interpolation"), validate=_validate)
def guided_gradcam(params, x, c, *, key=None, layer="target", interpolation="nearest"):
    """Guided Backprop times the Grad-CAM map upsampled to the input (shape of x).

    Args:
      layer: Grad-CAM's layer.
      interpolation: "nearest" (as Captum's GuidedGradCam) or "bilinear".
    """
    del key
    name = resolve_layer(params, layer)
    _, _, acts, grads = class_grads(params, x, c, layers=(name,), wrt_input=False)
    cam = upsample(cam_from(acts[name], grads[name]), x.shape[1:3], method=interpolation)
    return rectified_grads(params, x, c, guided, "guided_gradcam")[1] * cam
