"""Similarity of two batches of saliency maps, as in the sanity checks of Adebayo et al.

Four scores per pair of maps (one per image of the batch):

- `spearman_abs`: Spearman rank correlation of the absolute maps (`sum_c |h|`
  clipped at the 99th percentile and scaled to [0, 1]; `postprocess.absolute_map`);
- `spearman_signed`: the same on the signed maps (`sum_c h` over the 99th
  percentile of its magnitude, clipped to [-1, 1]; `postprocess.signed_map`);
- `ssim_abs`: SSIM with Gaussian weights (sigma 1.5) of the absolute maps, data range 1
  (`jaxsal.metrics.ssim`);
- `hog_spearman`: Spearman rank correlation of the HOG descriptors of the
  absolute maps (16x16 pixels per cell, 9 orientations, 3x3-cell blocks, L2-Hys:
  scikit-image's `hog` with `pixels_per_cell=(16, 16)`).

Spearman is `jaxsal.fooling.spearman` (ties share their average rank, as in
`scipy.stats.spearmanr`); a constant map (e.g. a Grad-CAM map that is zero
everywhere) has no ranks and gives NaN, as in scipy: aggregate with `nanmean`.

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim. Sanity checks for
  saliency maps. NeurIPS 2018, section 3 (similarity metrics).
  Dalal and Triggs. Histograms of oriented gradients for human detection. CVPR 2005.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.metrics import spearman
from jaxsal.postprocess import absolute_map, signed_map

METRICS = ("spearman_abs", "spearman_signed", "ssim_abs", "hog_spearman")


def _check_pair(a, b):
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"similarity needs two NHWC batches of the same shape, got {a.shape} and {b.shape}; "
            "upsample layer maps (Grad-CAM) to the input's size first"
        )


def spearman_abs(a: jax.Array, b: jax.Array, *, percentile: float = 99.0) -> jax.Array:
    """Spearman rank correlation of the absolute maps, per image.

    Args:
      a: raw attributions, NHWC.
      b: raw attributions of the same shape.
      percentile: the clipping percentile of `absolute_map` (99).

    Returns:
      Shape (N,); NaN for a constant map.
    """
    _check_pair(a, b)
    return spearman(absolute_map(a, percentile), absolute_map(b, percentile))


def spearman_signed(a: jax.Array, b: jax.Array, *, percentile: float = 99.0) -> jax.Array:
    """Spearman rank correlation of the signed maps (`postprocess.signed_map`), per image."""
    _check_pair(a, b)
    return spearman(signed_map(a, percentile), signed_map(b, percentile))


def ssim_abs(a: jax.Array, b: jax.Array, *, percentile: float = 99.0) -> jax.Array:
    """SSIM (Gaussian weights, sigma 1.5, data range 1) of the absolute maps, per image."""
    from jaxsal.metrics import ssim  # written beside this module; imported on use

    _check_pair(a, b)
    return ssim(absolute_map(a, percentile), absolute_map(b, percentile), data_range=1.0)


def hog(
    images: np.ndarray,
    *,
    pixels_per_cell: int = 16,
    cells_per_block: int = 3,
    orientations: int = 9,
    eps: float = 1e-5,
) -> np.ndarray:
    """HOG descriptors of a batch of grey images, as `skimage.feature.hog` (L2-Hys blocks).

    Gradients are central differences (zero on the border rows and columns);
    each pixel votes its gradient magnitude into one of `orientations` bins of
    unsigned orientation in [0, 180) degrees; a cell's histogram is the mean
    over its pixels (only whole cells from the top-left corner); each block of
    `cells_per_block` x `cells_per_block` cells is L2-normalised, clipped at
    0.2 and L2-normalised again.

    Args:
      images: (N, H, W) or (N, H, W, 1), H and W at least `cells_per_block` cells.
      pixels_per_cell: cell side in pixels (16, as in the sanity-checks paper).
      cells_per_block: block side in cells (3, scikit-image's default).
      orientations: orientation bins (9).
      eps: scikit-image's normalisation constant.

    Returns:
      (N, F) float64 descriptors, in scikit-image's order (block row, block
      column, cell row, cell column, orientation).
    """
    x = np.asarray(images, np.float64)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"hog needs grey images (N, H, W) or (N, H, W, 1), got {x.shape}")
    n, h, w = x.shape
    cr, cc = h // pixels_per_cell, w // pixels_per_cell
    if cr < cells_per_block or cc < cells_per_block:
        raise ValueError(
            f"images of {h}x{w} pixels hold fewer than {cells_per_block} cells of "
            f"{pixels_per_cell} pixels per side; use larger images or smaller cells"
        )
    g_row, g_col = np.zeros_like(x), np.zeros_like(x)
    g_row[:, 1:-1] = x[:, 2:] - x[:, :-2]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    bins = np.minimum((angle // (180.0 / orientations)).astype(int), orientations - 1)
    votes = magnitude[..., None] * (bins[..., None] == np.arange(orientations))
    votes = votes[:, : cr * pixels_per_cell, : cc * pixels_per_cell]
    cells = votes.reshape(n, cr, pixels_per_cell, cc, pixels_per_cell, orientations)
    cells = cells.sum(axis=(2, 4)) / pixels_per_cell**2
    k = cells_per_block
    br, bc = cr - k + 1, cc - k + 1
    blocks = np.stack(
        [np.stack([cells[:, r : r + k, c : c + k] for c in range(bc)], 1) for r in range(br)], 1
    )  # (N, br, bc, k, k, orientations)

    def l2(v):
        return v / np.sqrt((v**2).sum(axis=(3, 4, 5), keepdims=True) + eps**2)

    return l2(np.minimum(l2(blocks), 0.2)).reshape(n, -1)


def hog_spearman(a: jax.Array, b: jax.Array, *, percentile: float = 99.0) -> jax.Array:
    """Spearman rank correlation between the HOG descriptors of the absolute maps, per image."""
    _check_pair(a, b)
    ha = hog(np.asarray(absolute_map(a, percentile)))
    hb = hog(np.asarray(absolute_map(b, percentile)))
    return spearman(jnp.asarray(ha), jnp.asarray(hb))


def similarities(
    a: jax.Array, b: jax.Array, *, metrics: tuple[str, ...] = METRICS
) -> dict[str, np.ndarray]:
    """Every score of `metrics` between two batches of raw attributions.

    Args:
      a: raw attributions (N, H, W, C), e.g. of the trained model.
      b: the same shape, e.g. of a randomised model.
      metrics: names out of `METRICS`.

    Returns:
      {name: (N,) float64 array}.
    """
    fns = {
        "spearman_abs": spearman_abs,
        "spearman_signed": spearman_signed,
        "ssim_abs": ssim_abs,
        "hog_spearman": hog_spearman,
    }
    unknown = [m for m in metrics if m not in fns]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return {m: np.asarray(fns[m](a, b), np.float64) for m in metrics}
