"""Every interpreter's map on held-out scenes: heatmaps, localisation scores, a figure grid.

The maps are made comparable as non-negative (N, H, W) heatmaps at the input's
resolution: input-level attributions as `sum_c |h|`, Grad-CAM as the
fooling paper's rectified, max-normalised map and SimpleGrad_T as its
heatmap, both upsampled bilinearly. Two scores use the digit's ground-truth
box: the share of a map's mass inside the box, and the pointing game (a hit
when the map's argmax lies in the box, optionally within a tolerance).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxsal
from jaxsal import postprocess
from jaxsal.data import MEAN, STD


@dataclasses.dataclass(frozen=True)
class Method:
    """An interpreter, its hyper-parameters and how its output becomes a heatmap.

    Attributes:
      fn: the interpreter, `fn(params, x, c, *, key=None, **hyper)`.
      hyper: keyword hyper-parameters (JSON-friendly values, or None for defaults).
      kind: "input" (attribution of the input's shape), "cam" (Grad-CAM map) or
        "layer" (gradient at a layer).
    """

    fn: Callable
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = "input"


def methods(*, samples: int = 50, var_samples: int = 25, steps: int = 50) -> dict[str, Method]:
    """The interpreters of the main job, with the sanity-checks paper's settings.

    Integrated Gradients starts from the black canvas (the normalised value of
    a zero pixel), the absence of a digit.

    Args:
      samples: SmoothGrad's noisy samples (50 in the paper).
      var_samples: VarGrad's noisy samples (25).
      steps: Integrated Gradients' quadrature points (50).
    """
    noise = {"noise_level": 0.15}

    def chunked(n):  # samples per pass: bounds the memory of the noisy batch
        return {"samples": n, "chunk": 10 if n % 10 == 0 else None, **noise}

    return {
        "simple_grad": Method(jaxsal.simple_grad),
        "input_x_grad": Method(jaxsal.input_x_grad),
        "smoothgrad": Method(jaxsal.smoothgrad, chunked(samples)),
        "vargrad": Method(jaxsal.vargrad, chunked(var_samples)),
        "integrated_gradients": Method(
            jaxsal.integrated_gradients, {"steps": steps, "baseline": "black canvas"}
        ),
        "guided_backprop": Method(jaxsal.guided_backprop),
        "deconvnet": Method(jaxsal.deconvnet),
        "gradcam": Method(jaxsal.gradcam, {"layer": "target"}, "cam"),
        "guided_gradcam": Method(jaxsal.guided_gradcam, {"layer": "target"}),
        "simple_grad_t": Method(jaxsal.simple_grad_t, {"layer": "target"}, "layer"),
    }


def _call_hyper(hyper: Mapping[str, Any], x: jax.Array) -> dict[str, Any]:
    hyper = dict(hyper)
    if hyper.get("baseline") == "black canvas":
        hyper["baseline"] = jnp.full_like(x, -MEAN / STD)
    return hyper


def heatmap(raw: jax.Array, kind: str, size: tuple[int, int]) -> np.ndarray:
    """A raw interpreter output as a non-negative (N, H, W) heatmap at the input's size."""
    if kind == "input":
        h = postprocess.reduce_channels(raw, "abs_sum")
    elif kind == "cam":
        h = postprocess.upsample(postprocess.gradcam_heatmap(raw), size, "bilinear")
    elif kind == "layer":
        h = postprocess.upsample(postprocess.simple_grad_t_heatmap(raw), size, "bilinear")
    else:
        raise ValueError(f'unknown map kind "{kind}"; use "input", "cam" or "layer"')
    return np.asarray(h[..., 0], np.float64)


def compute_maps(
    params: jaxsal.ModelParams,
    x: jax.Array,
    c: jax.Array,
    table: Mapping[str, Method],
    *,
    key: jax.Array,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """Runs every interpreter on (x, c) and times it.

    Each interpreter runs twice: the first call includes compilation, the
    second is the steady-state time.

    Returns:
      Heatmaps {name: (N, H, W)} and timings {name: {"seconds", "first_call_seconds"}}.
    """
    maps, times = {}, {}
    for i, (name, m) in enumerate(table.items()):
        hyper = _call_hyper(m.hyper, x)
        k = jax.random.fold_in(key, i)
        spent = []
        for _ in range(2):
            t0 = time.perf_counter()
            raw = jax.block_until_ready(m.fn(params, x, c, key=k, **hyper))
            spent.append(time.perf_counter() - t0)
        maps[name] = heatmap(raw, m.kind, x.shape[1:3])
        times[name] = {"seconds": spent[1], "first_call_seconds": spent[0]}
    return maps, times


def mass_in_box(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each (non-negative) map's total inside its box, (N,); 0 for an all-zero map.

    Args:
      maps: (N, H, W) non-negative heatmaps.
      boxes: (N, 4) half-open (y0, x0, y1, x1).
    """
    out = np.zeros(len(maps))
    for i, (m, (y0, x0, y1, x1)) in enumerate(zip(np.abs(maps), boxes)):
        total = m.sum()
        out[i] = m[y0:y1, x0:x1].sum() / total if total > 0 else 0.0
    return out


def pointing_hits(maps: np.ndarray, boxes: np.ndarray, *, tolerance: float = 0.0) -> np.ndarray:
    """Pointing game: is each map's argmax within `tolerance` pixels of its box? (N,) bool.

    Args:
      maps: (N, H, W) heatmaps (ties: the first maximum in row-major order).
      boxes: (N, 4) half-open (y0, x0, y1, x1).
      tolerance: distance in pixels (0: inside the box; the DSSR paper uses 15).

    References:
      Zhang et al., Top-down neural attention by excitation backprop (2016);
      Gu et al., the discriminative perturbation (DSSR) paper, section 4.
    """
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    py, px = np.unravel_index(flat, maps.shape[1:])
    return _near_box(py, px, boxes, tolerance)


def _near_box(py, px, boxes, tolerance):
    # Distance from a pixel centre to the box [y0, y1 - 1] x [x0, x1 - 1] of pixel indices.
    dy = np.maximum(np.maximum(boxes[:, 0] - py, py - (boxes[:, 2] - 1)), 0)
    dx = np.maximum(np.maximum(boxes[:, 1] - px, px - (boxes[:, 3] - 1)), 0)
    return np.hypot(dy, dx) <= tolerance


def baselines(boxes: np.ndarray, size: tuple[int, int], *, tolerance: float = 0.0) -> dict:
    """Chance levels: a uniform map's mass in the box (the box's area share) and the
    pointing game of the canvas centre."""
    h, w = size
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (h * w)
    n = len(boxes)
    centre = _near_box(np.full(n, h // 2), np.full(n, w // 2), boxes, tolerance)
    return {"uniform_mass_in_box": float(area.mean()), "centre_pointing": float(centre.mean())}


def display(h: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Per-map scaling to [0, 1] for display, clipped at a percentile (sanity-checks style)."""
    top = np.percentile(h, percentile, axis=(1, 2), keepdims=True)
    top = np.where(top > 0, top, h.max(axis=(1, 2), keepdims=True))
    return np.clip(h / np.maximum(top, 1e-12), 0.0, 1.0)


def plot_grid(
    canvases: np.ndarray,
    boxes: np.ndarray,
    maps: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    row_labels: list[str] | None = None,
) -> Path:
    """A PNG grid: one row per scene, the scene with its box, then one column per map.

    Args:
      canvases: (N, H, W) images in [0, 1].
      boxes: (N, 4) half-open (y0, x0, y1, x1).
      maps: {name: (N, H, W) non-negative heatmap}.
      path: the PNG to write.
      row_labels: a label per scene (e.g. "true 3 / pred 3").
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n, cols = len(canvases), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.4 * cols, 1.45 * n), squeeze=False)
    shown = {k: display(v) for k, v in maps.items()}
    for i in range(n):
        y0, x0, y1, x1 = boxes[i]
        panels = [("scene", canvases[i], "gray")] + [(k, v[i], "inferno") for k, v in shown.items()]
        for j, (name, img, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor="lime", linewidth=1.0 if j == 0 else 0.5))  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
    fig.tight_layout(pad=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
