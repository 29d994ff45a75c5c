"""Scoring the heads of one seed on a split: predictions, post hoc maps, boxes, SSIM.

Every model explains the true class of every image with each post hoc
method (`jaxsal.trust.posthoc_maps`: Grad-CAM at `head.1` upsampled to the
input, or Guided Grad-CAM, each divided by its maximum). Per image it keeps
the prediction, the map's mean (eq. 4's S at the input's resolution: what the
penalty acts on), the pointing game (the map's maximum inside the box) and the
energy in the box (the map's share inside it, `jaxsal.metrics`), and the
SSIM (eq. 11, data range 1) between its map and the reference model's (the
first: the cross-entropy baseline). Maps are scored batch by batch and never
kept, so a large test split fits in memory; only the first `examples`
images' maps are returned, for the figure.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from experiments.trust.data import StudyData
from jaxsal.metrics import box_mask, pointing_game, relevance_mass_accuracy, ssim
from jaxsal.params import ModelParams
from jaxsal.pointing import centre_maps
from jaxsal.trust import posthoc_maps


@functools.partial(jax.jit, static_argnames=("methods",))
def _explain(params: ModelParams, x, y, methods: tuple[str, ...]):
    pred = jnp.argmax(params.apply(x), -1)
    return pred, {m: posthoc_maps(params, x, y, method=m, layer="head") for m in methods}


@jax.jit
def _box_scores(maps, box):
    mask = box_mask(box, maps.shape[1:3])
    return pointing_game(maps, mask), relevance_mass_accuracy(maps, mask)


@jax.jit
def _ssim(a, b):
    return ssim(a[..., None], b[..., None])


def chance_scores(box, shape) -> dict[str, np.ndarray]:
    """Calibration of the box metrics: the centre pixel's pointing game, a uniform map's energy."""
    mask = np.asarray(box_mask(box, shape))
    centre = centre_maps(len(box), shape)
    return {"pointing": np.asarray(pointing_game(jnp.asarray(centre), jnp.asarray(mask))),
            "energy": mask.mean(axis=(1, 2))}  # fmt: skip


def score_models(
    models: Mapping[str, ModelParams],
    data: StudyData,
    split: str,
    *,
    methods: tuple[str, ...],
    batch_size: int = 100,
    examples: int = 0,
) -> dict[str, np.ndarray]:
    """Per-image values of every model on a split, flat keys.

    Args:
      models: {name: `TransferNet`}; the first is the reference of the SSIM.
      data: the images.
      split: "validation" or "test".
      methods: post hoc methods.
      batch_size: images per call.
      examples: keep the first images' maps for the figure.

    Returns:
      "label"; per model "NAME/prediction" and per method "NAME/METHOD/mean",
      "NAME/METHOD/ssim" (not for the reference) and, with boxes, "NAME/METHOD/pointing",
      "NAME/METHOD/energy"; with boxes "chance/pointing" (centre pixel) and
      "chance/energy" (uniform map); "examples/image" (and "examples/box"),
      "examples/NAME/METHOD".
    """
    names = list(models)
    ref = names[0]
    out: dict[str, list] = {}

    def add(key, value):
        out.setdefault(key, []).append(np.asarray(value))

    seen = 0
    for batch in data.batches(split, batch_size):
        x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
        add("label", batch["label"])
        res = {n: _explain(p, x, y, tuple(methods)) for n, p in models.items()}
        keep = max(0, min(examples - seen, len(y)))
        if keep:
            add("examples/image", batch["image"][:keep])
        if "box" in batch:
            box = jnp.asarray(batch["box"])
            for k, v in chance_scores(batch["box"], x.shape[1:3]).items():
                add(f"chance/{k}", v)
            if keep:
                add("examples/box", batch["box"][:keep])
        for n, (pred, maps) in res.items():
            add(f"{n}/prediction", pred)
            for m in methods:
                add(f"{n}/{m}/mean", maps[m].mean(axis=(1, 2)))
                if n != ref:
                    add(f"{n}/{m}/ssim", _ssim(maps[m], res[ref][1][m]))
                if "box" in batch:
                    hit, energy = _box_scores(maps[m], box)
                    add(f"{n}/{m}/pointing", hit)
                    add(f"{n}/{m}/energy", energy)
                if keep:
                    add(f"examples/{n}/{m}", np.asarray(maps[m][:keep], np.float32))
        seen += len(y)
    return {k: np.concatenate(v) for k, v in out.items()}
