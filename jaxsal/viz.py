"""Pictures of saliency maps: colour them, lay them over images, grid them, save them.

NumPy and matplotlib only; jax arrays are accepted (converted with `np.asarray`).
Figures are built as `matplotlib.figure.Figure` objects with an Agg canvas of their own, so
nothing here touches pyplot's global backend or figure list, and nothing is shown:
`save` writes them to PNG, and a notebook displays a returned figure.

Colours. A map is *signed* (shown with a diverging colormap, default "bwr", centred at zero and
scaled symmetrically by max |h|) or *absolute* (a sequential colormap, default "inferno",
scaled from 0 to max h). With `signed=None` a map is signed when it has a negative value.
Channels are reduced first: signed maps by sum, absolute maps by sum of |h|.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

SIGNED_CMAP = "bwr"
ABSOLUTE_CMAP = "inferno"
# Signed maps look colours up in a table of this odd length, so that zero lands exactly on the
# colormap's centre (white for "bwr") and h and -h get mirrored colours; matplotlib's default
# 256 entries would put zero at (1, 254/255, 254/255).
_SIGNED_TABLE = 1025
_INTERPOLATIONS = ("bilinear", "nearest")


def _as_map(h) -> np.ndarray:
    """A finite (H, W, C) float64 map."""
    a = np.asarray(h, dtype=np.float64)
    if a.ndim not in (2, 3):
        raise ValueError(
            f"map of shape {a.shape}: expected (H, W) or (H, W, C); for a batch pass one map, h[i]"
        )
    if a.size == 0:
        raise ValueError(f"map of shape {a.shape} is empty")
    if not np.isfinite(a).all():
        raise ValueError("map has NaN or infinite values; replace them (np.nan_to_num)")
    return a if a.ndim == 3 else a[..., None]


def _reduce(h, signed: bool | None) -> tuple[np.ndarray, bool]:
    """(H, W) map with channels reduced (sum if signed, sum of |h| if not), and `signed`."""
    a = _as_map(h)
    if signed is None:
        signed = bool((a < 0).any())
    return (a.sum(-1) if signed else np.abs(a).sum(-1)), bool(signed)


def _scale(m: np.ndarray, vmax: float | None) -> float:
    """What maps to the colormap's end: `vmax`, or max |m| (0 for a zero map)."""
    if vmax is None:
        return float(np.abs(m).max())
    if not np.isfinite(vmax) or vmax <= 0:
        raise ValueError(f"vmax must be positive and finite, got {vmax!r}; or leave it None")
    return float(vmax)


def _colormap(cmap: str | Colormap | None, default: str) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    name = default if cmap is None else cmap
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f'unknown colormap "{name}"; use a name in matplotlib.colormaps (e.g. "bwr", '
            '"RdBu_r", "inferno", "viridis") or a Colormap'
        ) from None


def _colour(m: np.ndarray, signed: bool, cmap, scale: float) -> np.ndarray:
    """(H, W) reduced map to (H, W, 3) colours; a zero scale gives the zero colour, no NaN."""
    v = m / scale if scale > 0 else np.zeros_like(m)
    if signed:
        table = _colormap(cmap, SIGNED_CMAP).resampled(_SIGNED_TABLE)
        return table(0.5 + 0.5 * np.clip(v, -1.0, 1.0))[..., :3]
    return _colormap(cmap, ABSOLUTE_CMAP)(np.clip(v, 0.0, 1.0))[..., :3]


def heatmap_rgb(
    h, *, signed: bool | None = None, cmap=None, vmax: float | None = None
) -> np.ndarray:
    """Colours of a saliency map.

    Args:
      h: map, (H, W), (H, W, 1) or (H, W, C).
      signed: show signed (diverging colormap centred at zero; channels summed) or absolute
        (sequential colormap from zero; channels reduced by sum of |h|). None: signed when `h`
        has a negative value.
      cmap: colormap name or `matplotlib.colors.Colormap`; default "bwr" for signed maps,
        "inferno" for absolute ones.
      vmax: the value given the colormap's end colour (and -vmax the other end, for signed
        maps); larger values are clipped. Default: max |h| after channel reduction. A map
        that is all zero gets the zero colour (the centre, or the start of the colormap).

    Returns:
      float (H, W, 3) in [0, 1].
    """
    m, signed = _reduce(h, signed)
    return _colour(m, signed, cmap, _scale(m, vmax))


def _resize_weights(n_in: int, n_out: int, interpolation: str) -> np.ndarray:
    """(n_out, n_in) interpolation matrix, as torch's `interpolate` (align_corners=False)."""
    i = np.arange(n_out)
    w = np.zeros((n_out, n_in))
    if interpolation == "nearest":
        w[i, (i * n_in) // n_out] = 1.0
        return w
    src = np.maximum((i + 0.5) * (n_in / n_out) - 0.5, 0.0)  # half-pixel centres
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(w, (i, lo), 1.0 - frac)
    np.add.at(w, (i, hi), frac)
    return w


def _upsample(m: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """(h, w) map to `size` = (H, W), separably."""
    rows = _resize_weights(m.shape[0], size[0], interpolation)
    cols = _resize_weights(m.shape[1], size[1], interpolation)
    return rows @ m @ cols.T


def _as_image(image) -> np.ndarray:
    """A float64 (H, W, 3) image in [0, 1]; grey images repeated to RGB."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"image of shape {a.shape}: expected (H, W), (H, W, 1) or (H, W, 3)")
    if a.dtype == np.uint8:
        raise TypeError(
            "image is uint8; pass floats in [0, 1]: image / 255 or jaxsal.preprocess.to_float"
        )
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("image has NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        fix = (
            "a normalised model input? show jaxsal.preprocess.imagenet_display(x)"
            if lo < 0.0
            else "divide 8-bit values by 255, or clip"
        )
        raise ValueError(f"image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]: {fix}")
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def _overlay(img: np.ndarray, h, alpha, signed, cmap, vmax, interpolation) -> np.ndarray:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f'unknown interpolation "{interpolation}"; use "bilinear" or "nearest"')
    m, signed = _reduce(h, signed)
    scale = _scale(m, vmax)  # of the map itself: upsampling may miss its extremes
    size = img.shape[:2]
    if m.shape != size:
        if m.shape[0] > size[0] or m.shape[1] > size[1]:
            raise ValueError(
                f"map of size {m.shape} is larger than the image {size} on a side; overlay "
                "only upsamples maps: downsample the map or pass the image it was computed on"
            )
        m = _upsample(m, size, interpolation)
    return alpha * _colour(m, signed, cmap, scale) + (1.0 - alpha) * img


def overlay(
    image,
    h,
    *,
    alpha: float = 0.5,
    signed: bool | None = None,
    cmap=None,
    vmax: float | None = None,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """A saliency map's colours blended over its image: `alpha * colour + (1 - alpha) * image`.

    Args:
      image: (H, W), (H, W, 1) or (H, W, 3) floats in [0, 1]; grey images are shown as grey
        RGB. For a normalised model input, pass `jaxsal.preprocess.imagenet_display(x)[0]`.
      h: map, (h, w[, C]) with h <= H and w <= W (any factor, integer or not; e.g. a 7x7
        Grad-CAM map on a 224x224 image). A smaller map is upsampled after channel reduction
        and before colouring; its scale (max |h|) is taken before upsampling.
      alpha: weight of the map's colours, in [0, 1].
      signed: as `heatmap_rgb`.
      cmap: as `heatmap_rgb`.
      vmax: as `heatmap_rgb`.
      interpolation: "bilinear" (half-pixel centres, like torch's `interpolate` with
        `align_corners=False`) or "nearest" (source index floor(i * h / H), like torch's).

    Returns:
      float (H, W, 3) in [0, 1].
    """
    return _overlay(_as_image(image), h, alpha, signed, cmap, vmax, interpolation)


def _check_rows(name: str, value, n: int) -> list:
    if value is None:
        return [None] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries; expected {n}")
    return value


def grid(
    images,
    maps: Mapping,
    *,
    titles=None,
    row_labels=None,
    overlay: bool = True,
    alpha: float = 0.5,
    signed: bool | None = None,
    boxes=None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """A figure with one row per image and one column per method, the image itself first.

    Every panel is scaled on its own (by its map's max |h|).

    Args:
      images: (N, H, W) or (N, H, W, 1 or 3) floats in [0, 1].
      maps: {method name: (N, h, w[, C]) maps}, h <= H and w <= W; columns in this order.
      titles: one column title per method (default: the names in `maps`).
      row_labels: one label per image, written left of each row.
      overlay: blend each map over its image (with `alpha`); False shows the map's colours
        alone, upsampled to the image's size.
      alpha: weight of the map's colours when overlaying.
      signed: as `heatmap_rgb`, for all maps.
      boxes: optional (N, 4) half-open pixel boxes (y0, x0, y1, x1), one per image, drawn on
        every panel of its row.
      figsize: (width, height) in inches; default 2 inches a panel.

    Returns:
      The `matplotlib.figure.Figure` (not shown; `save` it, or display it in a notebook).
    """
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4):
        raise ValueError(f"images of shape {imgs.shape}: expected (N, H, W) or (N, H, W, C)")
    if not isinstance(maps, Mapping) or not maps:
        raise TypeError("maps must be a non-empty dict {method name: (N, h, w[, C]) maps}")
    n = len(imgs)
    arrays = {}
    for name, m in maps.items():
        arrays[name] = np.asarray(m)
        if arrays[name].ndim not in (3, 4) or len(arrays[name]) != n:
            raise ValueError(
                f'map "{name}" has shape {arrays[name].shape}; expected (N, h, w[, C]) with N = {n}'
            )
    titles = _check_rows("titles", list(maps) if titles is None else titles, len(maps))
    row_labels = _check_rows("row_labels", row_labels, n)
    if boxes is not None:
        boxes = np.asarray(boxes)
        if boxes.shape != (n, 4):
            raise ValueError(f"boxes of shape {boxes.shape}; expected ({n}, 4) as (y0, x0, y1, x1)")

    cols = 1 + len(maps)
    fig = Figure(figsize=figsize or (2.0 * cols, 2.0 * n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, cols, squeeze=False)
    for r in range(n):
        try:
            img = _as_image(imgs[r])
        except (TypeError, ValueError) as e:
            raise type(e)(f"image {r}: {e}") from None
        panels = [img]
        for name, m in arrays.items():
            try:
                a = alpha if overlay else 1.0
                panels.append(_overlay(img, m[r], a, signed, None, None, "bilinear"))
            except ValueError as e:
                raise ValueError(f'map "{name}", image {r}: {e}') from None
        for c, (ax, panel) in enumerate(zip(axes[r], panels, strict=True)):
            ax.imshow(np.clip(panel, 0.0, 1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("image" if c == 0 else str(titles[c - 1]), fontsize="small")
            if boxes is not None:
                y0, x0, y1, x1 = boxes[r]
                ax.add_patch(
                    Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5)
                )
        if row_labels[r] is not None:
            axes[r, 0].set_ylabel(str(row_labels[r]), fontsize="small")
    return fig


def save(fig_or_array, path, *, overwrite: bool = False, dpi: int = 150) -> Path:
    """Writes a figure, or an (H, W, 3) image such as `overlay`'s, to a PNG file.

    Args:
      fig_or_array: a `matplotlib.figure.Figure` (closed in pyplot after saving, if pyplot
        manages it), or an (H, W), (H, W, 1) or (H, W, 3) float array in [0, 1], written one
        pixel per array entry.
      path: where to write; must end in ".png". Missing parent directories are created.
      overwrite: replace an existing file (by default an existing file is an error).
      dpi: resolution of a figure (for an array, only recorded in the file).

    Returns:
      The path written.

    Raises:
      FileExistsError: `path` exists and `overwrite` is False.
      ValueError: `path` does not end in ".png", or the array is not an image in [0, 1].
      TypeError: the array is uint8 (pass floats in [0, 1]).
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f'save writes PNG files; name the file "*.png", got "{path}"')
    is_fig = isinstance(fig_or_array, Figure)
    # Rounded to 8 bits here: matplotlib would truncate floats (0.85 -> 216 rather than 217).
    img = None if is_fig else np.round(_as_image(fig_or_array) * 255).astype(np.uint8)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it, or choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not is_fig:
        matplotlib.image.imsave(path, img, format="png", dpi=dpi)
        return path
    fig_or_array.savefig(path, dpi=dpi, format="png")
    pyplot = sys.modules.get("matplotlib.pyplot")  # loaded only if the caller uses it
    if pyplot is not None:
        pyplot.close(fig_or_array)
    return path
