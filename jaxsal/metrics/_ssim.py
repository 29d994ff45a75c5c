"""Generic image-similarity metrics in jnp (differentiable, jit-able).

`ssim` is the structural similarity index of Wang et al. (2004) with a Gaussian
window, the form used by Halliwell & Lecue (trustworthy CNNs) and by the sanity
checks of Adebayo et al. to compare saliency maps. It reproduces
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=L)``: constants c1 = (0.01 L)^2,
c2 = (0.03 L)^2, an 11-tap Gaussian (sigma 1.5, truncated at 3.5 sigma),
symmetric ("reflect") padding, and the mean of the SSIM map after cropping the
5-pixel border the filter radius touches.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["gaussian_window", "ssim", "ssim_map"]

_K1 = 0.01
_K2 = 0.03
_TRUNCATE = 3.5


def gaussian_window(*, sigma: float = 1.5, truncate: float = _TRUNCATE) -> np.ndarray:
    """The normalised 1-D Gaussian taps that `scipy.ndimage.gaussian_filter` uses.

    Args:
      sigma: standard deviation in pixels.
      truncate: the radius is ``int(truncate * sigma + 0.5)`` as in scipy.

    Returns:
      (2 r + 1,) float64 weights summing to 1.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_matrix(n: int, taps: np.ndarray) -> np.ndarray:
    """(n, n) matrix of a 1-D filter with scipy's "reflect" (symmetric) padding."""
    r = (len(taps) - 1) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for k, t in enumerate(taps):
            j = i + k - r
            j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)
            m[i, j] += t
    return m


def _filter(x: jnp.ndarray, taps: np.ndarray) -> jnp.ndarray:
    """Separable Gaussian filter over the two trailing axes as two matrix products."""
    h, w = x.shape[-2:]
    mh = jnp.asarray(_filter_matrix(h, taps), dtype=x.dtype)
    mw = jnp.asarray(_filter_matrix(w, taps), dtype=x.dtype)
    return jnp.einsum("ij,...jk,lk->...il", mh, x, mw)


def ssim_map(a: jnp.ndarray, b: jnp.ndarray, *, data_range: float = 1.0, sigma: float = 1.5):
    """Per-pixel SSIM over the two trailing axes (no border crop).

    Args:
      a: (..., H, W) image.
      b: (..., H, W) image of the same shape.
      data_range: L, the range of values (1.0 for maps scaled to [0, 1]).
      sigma: Gaussian window standard deviation (1.5 in Wang et al.).

    Returns:
      (..., H, W) SSIM map.

    References:
      Wang, Bovik, Sheikh, Simoncelli (2004), Image quality assessment: from
      error visibility to structural similarity, eq. 13.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
    a = a.astype(dtype)
    b = b.astype(dtype)
    taps = gaussian_window(sigma=sigma)
    ux, uy = _filter(a, taps), _filter(b, taps)
    vx = _filter(a * a, taps) - ux * ux
    vy = _filter(b * b, taps) - uy * uy
    vxy = _filter(a * b, taps) - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def ssim(a: jnp.ndarray, b: jnp.ndarray, *, data_range: float = 1.0) -> jnp.ndarray:
    """Mean structural similarity with a Gaussian window (sigma 1.5).

    Shapes follow jaxsal's map layout: (H, W) gives a scalar; (H, W, C) gives the
    mean over channels (skimage's ``channel_axis=-1``); (N, H, W, C), e.g. a
    batch of (N, h, w, 1) saliency maps, gives one value per image, shape (N,).

    Args:
      a: (H, W), (H, W, C) or (N, H, W, C) array.
      b: array of the same shape as ``a``.
      data_range: L in c1 = (0.01 L)^2, c2 = (0.03 L)^2; the value range of the
        inputs (1.0 for maps scaled to [0, 1]).

    Returns:
      Scalar for 2-D and 3-D inputs, (N,) for 4-D inputs.

    Raises:
      ValueError: shapes differ, wrong rank, or an image side below 11 pixels
        (the Gaussian window's width).

    References:
      Wang et al. (2004), SSIM; Halliwell & Lecue, Trustworthy CNNs (SSIM
      between saliency maps with c1 = (0.01 L)^2, c2 = (0.03 L)^2).
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3, 4):
        raise ValueError(
            f"ssim takes (H, W), (H, W, C) or (N, H, W, C) arrays, got shape {a.shape}"
        )
    win = len(gaussian_window())
    r = (win - 1) // 2
    spatial = a.shape[:2] if a.ndim < 4 else a.shape[1:3]
    if min(spatial) < win:
        raise ValueError(
            f"ssim needs images of at least {win}x{win} pixels (the Gaussian window), "
            f"got {spatial}; upsample the maps first (jaxsal.postprocess.upsample)"
        )
    if a.ndim == 2:
        s = ssim_map(a, b, data_range=data_range)
        return s[r:-r, r:-r].mean()
    # move channels in front of the spatial axes: (..., C, H, W)
    s = ssim_map(jnp.moveaxis(a, -1, -3), jnp.moveaxis(b, -1, -3), data_range=data_range)
    s = s[..., r:-r, r:-r]
    return s.mean(axis=(-3, -2, -1))
