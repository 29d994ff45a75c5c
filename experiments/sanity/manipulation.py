"""The attack of Dombrowski et al. on one model, with and without beta-smoothing.

A *setting* is "relu" (the model as trained, attacked through its beta-smoothed
surrogate with beta grown from 10 to 100, judged with ReLU) or a beta (the
defence: the explanation of the beta-smoothed model, attacked directly, the
attacker knowing beta, and judged with the same beta). The target of scene i is
the explanation of scene i + 1 (cyclically) under the same setting.

Per scene: similarity of the manipulated input's explanation to the target and
to the original explanation (Spearman, SSIM of maps scaled to max 1, MSE), the
output change (largest softmax change, class kept) and the input change (RMS of
the change in pixel values in [0, 1]); the same for the untouched input (x' = x),
the baseline every manipulated figure is read against.

References:
  Dombrowski, Alber, Anders, Ackermann, Mueller and Kessel. Explanations can be
  manipulated and geometry is to blame. NeurIPS 2019, sections 3 and 5.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.sanity.config import ManipulationConfig
from experiments.sanity.randomisation import Explainer
from jaxsal.data.photo_scenes import PHOTO_MEAN, PHOTO_STD
from jaxsal.sanity import explanation_map, manipulate, manipulation_scores

BOUNDS = ((0.0 - PHOTO_MEAN) / PHOTO_STD, (1.0 - PHOTO_MEAN) / PHOTO_STD)  # black, white
SCORES = ("spearman_target", "spearman_original", "ssim_target", "ssim_original", "mse_target",
          "mse_original", "max_prob_change", "same_class", "pixel_rms")  # fmt: skip


def settings(config: ManipulationConfig, name: str) -> list[str]:
    """The settings a method is attacked in: "relu", then each beta for defence methods."""
    betas = [f"{b:g}" for b in config.betas] if name in config.defence_methods else []
    return ["relu", *betas]


def _scores(model, x, x_adv, target, explain, c, key) -> dict[str, np.ndarray]:
    s = manipulation_scores(model, x, x_adv, target, explain, c=c, key=key, bounds=BOUNDS)
    s["pixel_rms"] = np.sqrt(s.pop("pixel_mse"))
    return {k: s[k] for k in SCORES}


def attack(params, x, explain: Explainer, setting: str, config: ManipulationConfig, *, key,
           progress: bool = True) -> dict:  # fmt: skip
    """Attacks one method in one setting on the scenes `x`; per-scene scores and figure maps.

    Returns:
      {"manipulated": {score: (n,)}, "untouched": {score: (n,)}, "expl_mse": (steps,)
      the surrogate's explanation MSE, "seconds", "x_adv" (k, H, W, C) and "maps"
      {"original", "target", "manipulated"} (k, H, W, 1) of the first k =
      `config.figure_scenes` scenes}.
    """
    x = jnp.asarray(x)
    cfg = config.attack
    model = params
    if setting != "relu":
        model = params.with_beta(float(setting))
        cfg = dataclasses.replace(cfg, beta_start=None, beta_end=None)
    lrp = explain.method.name.startswith("lrp")
    cfg = dataclasses.replace(cfg, traced_beta=not lrp)  # LRP hashes its module
    c = jnp.argmax(model.apply(x), -1)  # the explained class: the prediction, as in the paper
    fn = jax.jit(explain)
    order = np.roll(np.arange(len(x)), -1)
    target = explanation_map(fn(model, x[order], c[order], key))
    t0 = time.perf_counter()
    desc = f"attack {explain.method.name} {setting}"
    x_adv, log = manipulate(model, x, target, explain, bounds=BOUNDS, config=cfg, key=key, c=c,
                            progress=progress, desc=desc)  # fmt: skip
    seconds = time.perf_counter() - t0
    k = config.figure_scenes
    return {
        "manipulated": _scores(model, x, x_adv, target, fn, c, key),
        "untouched": _scores(model, x, x, target, fn, c, key),
        "expl_mse": np.asarray(log["expl_mse"]),
        "seconds": np.asarray(seconds),
        "x_adv": np.asarray(x_adv[:k]),
        "maps": {
            "original": np.asarray(explanation_map(fn(model, x[:k], c[:k], key))),
            "target": np.asarray(target[:k]),
            "manipulated": np.asarray(explanation_map(fn(model, x_adv[:k], c[:k], key))),
        },
    }
