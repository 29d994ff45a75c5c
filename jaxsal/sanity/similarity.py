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

Each score can also be restricted to the ground-truth box of each image
(`boxes=`, half-open `(y0, x0, y1, x1)` as `jaxsal.data` yields them): the maps
are normalised over the whole image as above, then only the box's pixels are
compared (Spearman: ranks among the box's pixels, `masked_spearman`; SSIM: the
mean of the SSIM map over the box's pixels, `masked_ssim`; HOG: the descriptor
entries of the cells that overlap the box, `hog_cells`). On scenes whose object
fills a few percent of the image, the whole-image scores mostly measure the
background; the box scores measure the object. Restricting to a box is this
project's addition, not the paper's.

Spearman is `jaxsal.metrics.spearman` (ties share their average rank, as in
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

from jaxsal.metrics import box_mask, rankdata, spearman
from jaxsal.metrics._ssim import ssim_map
from jaxsal.postprocess import absolute_map, signed_map

METRICS = ("spearman_abs", "spearman_signed", "ssim_abs", "hog_spearman")


def _check_pair(a, b):
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"similarity needs two NHWC batches of the same shape, got {a.shape} and {b.shape}; "
            "upsample layer maps (Grad-CAM) to the input's size first"
        )


def masked_spearman(a: jax.Array, b: jax.Array, mask: jax.Array) -> jax.Array:
    """Spearman rank correlation per sample over the entries where `mask` is True.

    The masked entries are ranked among themselves (ties share their average
    rank, as `scipy.stats.spearmanr` on the selected values); jit-able, the
    mask may differ between samples.

    Args:
      a: shape (N, ...).
      b: the same shape.
      mask: booleans broadcasting to that shape.

    Returns:
      Shape (N,); NaN where the selection is empty or constant in `a` or `b`.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"masked_spearman needs two batches (N, ...) of one shape, got "
                         f"{a.shape} and {b.shape}")  # fmt: skip
    n = a.shape[0]
    m = jnp.broadcast_to(jnp.asarray(mask, bool), a.shape).reshape(n, -1)

    def ranks(v):  # unselected entries rank above every selected one, then drop out
        r = rankdata(jnp.where(m, v.reshape(n, -1), jnp.inf))
        mid = (m.sum(axis=1, keepdims=True) + 1) / 2
        return jnp.where(m, r - mid, 0.0)

    ra, rb = ranks(a), ranks(b)
    return (ra * rb).sum(axis=1) / jnp.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))


def masked_ssim(a: jax.Array, b: jax.Array, mask: jax.Array, *, data_range: float = 1.0):
    """The mean of the SSIM map (Gaussian weights, sigma 1.5) over the masked pixels.

    The SSIM map is computed over the whole image (symmetric padding at the
    border, as `skimage.metrics.structural_similarity(..., full=True)`), then
    averaged over the pixels where `mask` is True.

    Args:
      a: (N, H, W) or (N, H, W, 1) maps.
      b: the same shape.
      mask: (N, H, W) booleans (or the shape of `a`).
      data_range: L of c1 = (0.01 L)^2, c2 = (0.03 L)^2.

    Returns:
      (N,); NaN for an empty mask.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.ndim == 4 and a.shape[-1] == 1:
        a, b = a[..., 0], b[..., 0]
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"masked_ssim needs (N, H, W) or (N, H, W, 1) maps of one shape, got "
                         f"{a.shape} and {b.shape}")  # fmt: skip
    m = jnp.asarray(mask, bool).reshape(a.shape)
    s = ssim_map(a, b, data_range=data_range)
    return jnp.where(m, s, 0.0).sum(axis=(1, 2)) / m.sum(axis=(1, 2))


def _pixels(boxes, a: jax.Array) -> jax.Array:
    """The (N, H, W, 1) pixel masks of `boxes` for maps `a`."""
    return box_mask(boxes, a.shape[1:3])[..., None]


def spearman_abs(a: jax.Array, b: jax.Array, *, percentile: float = 99.0, boxes=None):
    """Spearman rank correlation of the absolute maps, per image.

    Args:
      a: raw attributions, NHWC.
      b: raw attributions of the same shape.
      percentile: the clipping percentile of `absolute_map` (99).
      boxes: optional (N, 4) boxes (y0, x0, y1, x1): rank only each box's pixels.

    Returns:
      Shape (N,); NaN for a constant map.
    """
    _check_pair(a, b)
    ma, mb = absolute_map(a, percentile), absolute_map(b, percentile)
    return spearman(ma, mb) if boxes is None else masked_spearman(ma, mb, _pixels(boxes, ma))


def spearman_signed(a: jax.Array, b: jax.Array, *, percentile: float = 99.0, boxes=None):
    """Spearman rank correlation of the signed maps (`postprocess.signed_map`), per image.

    `boxes` as for `spearman_abs`.
    """
    _check_pair(a, b)
    ma, mb = signed_map(a, percentile), signed_map(b, percentile)
    return spearman(ma, mb) if boxes is None else masked_spearman(ma, mb, _pixels(boxes, ma))


def ssim_abs(a: jax.Array, b: jax.Array, *, percentile: float = 99.0, boxes=None):
    """SSIM (Gaussian weights, sigma 1.5, data range 1) of the absolute maps, per image.

    Whole image: the mean SSIM map without its 5-pixel border (`jaxsal.metrics.ssim`,
    as scikit-image). With `boxes`: the mean SSIM map over each box (`masked_ssim`).
    """
    from jaxsal.metrics import ssim  # written beside this module; imported on use

    _check_pair(a, b)
    ma, mb = absolute_map(a, percentile), absolute_map(b, percentile)
    if boxes is None:
        return ssim(ma, mb, data_range=1.0)
    return masked_ssim(ma, mb, _pixels(boxes, ma), data_range=1.0)


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


def hog_cells(
    shape: tuple[int, int],
    *,
    pixels_per_cell: int = 16,
    cells_per_block: int = 3,
    orientations: int = 9,
) -> np.ndarray:
    """The cell (row, column) of every entry of `hog`'s descriptor of an image of `shape`.

    Returns:
      (F, 2) ints, in the descriptor's order (block row, block column, cell row
      and column inside the block, orientation): entry f describes the cell
      `cells[f]`, whose pixels are rows `16 r .. 16 r + 15`, columns `16 c .. 16 c + 15`.
    """
    cr, cc = shape[0] // pixels_per_cell, shape[1] // pixels_per_cell
    k = cells_per_block
    br, bc, i, j, _ = np.meshgrid(np.arange(cr - k + 1), np.arange(cc - k + 1), np.arange(k),
                                  np.arange(k), np.arange(orientations), indexing="ij")  # fmt: skip
    return np.stack([(br + i).ravel(), (bc + j).ravel()], axis=1)


def hog_box_mask(boxes, shape: tuple[int, int], *, pixels_per_cell: int = 16, **hog_kw):
    """(N, F) booleans: the descriptor entries of `hog` whose cell overlaps each box.

    Args:
      boxes: (N, 4) half-open boxes (y0, x0, y1, x1) in pixels.
      shape: (H, W) of the images.
      pixels_per_cell: as `hog`; other `hog` settings (`cells_per_block`,
        `orientations`) as keywords.
    """
    cells = hog_cells(shape, pixels_per_cell=pixels_per_cell, **hog_kw)
    y0, x0, y1, x1 = (np.asarray(boxes)[:, i, None] for i in range(4))
    top, left = cells[None, :, 0] * pixels_per_cell, cells[None, :, 1] * pixels_per_cell
    rows = (top < y1) & (top + pixels_per_cell > y0)
    cols = (left < x1) & (left + pixels_per_cell > x0)
    return rows & cols


def hog_spearman(a: jax.Array, b: jax.Array, *, percentile: float = 99.0, boxes=None):
    """Spearman rank correlation between the HOG descriptors of the absolute maps, per image.

    With `boxes`, only the descriptor entries of the cells that overlap each
    box (`hog_box_mask`; a 16-pixel cell is about half a digit) are ranked.
    """
    _check_pair(a, b)
    ha = jnp.asarray(hog(np.asarray(absolute_map(a, percentile))))
    hb = jnp.asarray(hog(np.asarray(absolute_map(b, percentile))))
    if boxes is None:
        return spearman(ha, hb)
    return masked_spearman(ha, hb, jnp.asarray(hog_box_mask(boxes, a.shape[1:3])))


def similarities(
    a: jax.Array, b: jax.Array, *, metrics: tuple[str, ...] = METRICS, boxes=None
) -> dict[str, np.ndarray]:
    """Every score of `metrics` between two batches of raw attributions.

    Args:
      a: raw attributions (N, H, W, C), e.g. of the trained model.
      b: the same shape, e.g. of a randomised model.
      metrics: names out of `METRICS`.
      boxes: optional (N, 4) ground-truth boxes (y0, x0, y1, x1): every score
        restricted to each image's box (see the module docstring).

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
    if boxes is not None and np.shape(boxes) != (a.shape[0], 4):
        raise ValueError(f"boxes must have shape ({a.shape[0]}, 4) as (y0, x0, y1, x1), "
                         f"got {np.shape(boxes)}")  # fmt: skip
    return {m: np.asarray(fns[m](a, b, boxes=boxes), np.float64) for m in metrics}
