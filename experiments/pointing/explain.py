"""Every method's maps on a batch of images, from the method table, with one shared reference.

The perturbation explainers come from `jaxsal.methods` (the one method table),
with the study's constants (`config.Settings`) and the reference image given
as an array, so that every method perturbs towards the very same image:
black (the canvas at 0), blur (a Gaussian blur of the image) or noise
(U(0, 1) pixels, drawn once per batch from the seed). Grad-CAM is upsampled
bilinearly to the image; the centre baseline is `jaxsal.pointing.centre_maps`,
the random baseline i.i.d. U(0, 1) maps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.pointing.config import REFERENCED, Settings
from jaxsal import pointing as pg
from jaxsal import postprocess
from jaxsal.explainers import gaussian_blur
from jaxsal.methods import Method, method

TABLE_NAMES = {"gradient": "simple_grad"}  # study label -> name in jaxsal.methods
OPTIMISED = ("meaningful_perturbation", "extremal_perturbation", "dssr", "dssr_plus")


def reference_image(kind: str, x: jax.Array, key, *, mean, std, sigma: float) -> jax.Array:
    """The reference of `kind` for the batch `x` (normalised like x: `(pixel - mean) / std`).

    Args:
      kind: "black" (pixel 0), "blur" (x blurred with `sigma` px) or "noise" (U(0, 1) pixels).
      x: images (N, H, W, C), normalised.
      key: PRNG key of the noise.
      mean, std: the normalisation (numbers or one per channel).
      sigma: the blur's standard deviation in pixels.
    """
    mean = jnp.asarray(mean, x.dtype)
    std = jnp.asarray(std, x.dtype)
    if kind == "black":
        return jnp.broadcast_to((0.0 - mean) / std, x.shape)
    if kind == "blur":
        return gaussian_blur(x, sigma)
    if kind == "noise":
        return (jax.random.uniform(key, x.shape, x.dtype) - mean) / std
    raise ValueError(f'unknown reference "{kind}"; use black, blur or noise')


def table_method(name: str, settings: Settings, size: int, *, reference=None,
                 progress: bool = False) -> Method:  # fmt: skip
    """The method table's entry for a study method, with the study's constants at `size` px."""
    s = settings
    optimised = {"steps": s.steps, "chunk": min(50, s.steps), "progress": progress}
    hyper = {
        "gradcam": {},
        "gradient": {},
        "occlusion": {"patch": s.occlusion_patch, "stride": s.occlusion_stride, "batch": 13},
        "rise": {"masks": s.rise_masks, "cells": s.rise_cells, "p": 0.5,
                 "batch": min(100, s.rise_masks)},
        "meaningful_perturbation": {**optimised, "lr": s.lr, "mask_size": s.mp_mask,
                                    "mode": s.mp_mode},
        "extremal_perturbation": {**optimised, "areas": tuple(s.extremal_areas),
                                  "step": s.extremal_step, "sigma": s.extremal_sigma},
        "dssr": {**optimised, "lr": s.lr, "lam": s.dssr_lam / size**2,
                 "lam_small": s.dssr_lam_small * s.dssr_lam / size**2, "theta": s.dssr_theta},
    }  # fmt: skip
    k1, p1, k2 = s.dssr_plus_pools
    hyper["dssr_plus"] = {**hyper["dssr"], "max_pool_size": k1, "max_pool_pad": p1,
                          "avg_pool_size": k2}  # fmt: skip
    if name not in hyper:
        raise ValueError(f"{name!r} is not a method of the table; baselines have no Method")
    kw = hyper[name]
    if name in REFERENCED:
        if reference is None:
            raise ValueError(f"{name} needs a reference image")
        kw = {**kw, "reference": reference}
    return method(TABLE_NAMES.get(name, name), **kw)


def maps_of(name: str, params, x, c, *, key, settings: Settings, reference=None,
            progress: bool = False) -> np.ndarray:  # fmt: skip
    """The maps of `name` (a study method or baseline), (N, H, W) float32, higher = more salient."""
    n, h, w, _ = x.shape
    if name == "centre":
        return np.array(pg.centre_maps(n, (h, w)), np.float32)
    if name == "random":
        return np.asarray(jax.random.uniform(key, (n, h, w)), np.float32)
    m = table_method(name, settings, h, reference=reference, progress=progress)
    heat = m.heatmap_of(params, x, c, key=key if m.stochastic or name in REFERENCED else None)
    if heat.shape[1:3] != (h, w):
        heat = postprocess.upsample(heat, (h, w), "bilinear")
    return np.asarray(heat[..., 0], np.float32)
