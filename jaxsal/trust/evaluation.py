"""Evaluation of trustworthy models: macro precision / recall and post hoc maps.

The paper reports accuracy, precision and recall (section 4,
`jaxsal.train.classification_metrics`) and the SSIM between the post hoc maps
of the baseline and a trustworthy model (eq. 11, `jaxsal.metrics.ssim`). Maps here are the true class's Grad-CAM (upsampled to
the input) or Guided Grad-CAM (|.| summed over channels), each divided by its
maximum, so SSIM uses data range 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.params import ModelParams
from jaxsal.postprocess import upsample
from jaxsal.trust.losses import saliency


def posthoc_maps(params: ModelParams, x: jax.Array, y: jax.Array, *, method: str, layer: str):
    """The true class's map at the input's resolution, in [0, 1], shape (N, H, W).

    Grad-CAM maps are upsampled bilinearly and divided by their maximum again.
    """
    m = saliency(params, x, y, method=method, layer=layer)
    if m.shape[1:3] != x.shape[1:3]:
        m = jnp.clip(upsample(m[..., None], x.shape[1:3], method="bilinear")[..., 0], 0.0)
        peak = m.reshape(m.shape[0], -1).max(axis=1).reshape(-1, 1, 1)
        m = m / (peak + 1e-6)
    return m


_posthoc = jax.jit(posthoc_maps, static_argnames=("method", "layer"))


@jax.jit
def _predict(params, x):
    return jnp.argmax(params.apply(x), -1)


def predict_and_explain(
    params: ModelParams,
    data: Iterable[Mapping[str, np.ndarray]],
    *,
    methods: Iterable[str] = ("gradcam", "guided_gradcam"),
    layer: str = "last_conv",
) -> dict[str, np.ndarray]:
    """Predictions and post hoc maps (true class) over a data set's batches.

    Returns:
      {"label", "prediction", <method>: (N, H, W) float32 maps in [0, 1]}.
    """
    methods = tuple(methods)
    out: dict[str, list] = {"label": [], "prediction": [], **{m: [] for m in methods}}
    for batch in data:
        x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
        out["label"].append(np.asarray(y))
        out["prediction"].append(np.asarray(_predict(params, x)))
        for m in methods:
            out[m].append(np.asarray(_posthoc(params, x, y, method=m, layer=layer), np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}
