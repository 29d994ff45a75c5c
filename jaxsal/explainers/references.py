"""Reference images r for the perturbation `x(m) = m * x + (1 - m) * r`.

A reference is a hashable callable `ref(x, key) -> r` on one NHWC batch:
`constant(value)`, `blur(sigma)` (Gaussian blur of the image itself) or
`uniform(low, high)` (noise, drawn once per call from `key`). Explainers also
accept a number (a constant), an array shaped like x, or the names "zero",
"blur" and "uniform" (the defaults of each).

References:
  Gu, Yang and Tresp. Introducing the DSSR explainer (2020), section 3:
  constant, blurred and uniform-noise U(0, 1) references.
  Fong and Vedaldi. Interpretable explanations of black boxes by meaningful
  perturbation. ICCV 2017 (the blurred reference).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def gaussian_kernel(sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian of radius `int(truncate * sigma + 0.5)` (scipy.ndimage's)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: jax.Array, sigma: float, *, truncate: float = 4.0) -> jax.Array:
    """Separable Gaussian blur of an NHWC batch over H and W, per channel.

    Borders are mirrored like `scipy.ndimage.gaussian_filter(mode="reflect")`
    (edge pixel repeated); a kernel wider than the image is cut to fit.

    Args:
      x: images (N, H, W, C).
      sigma: standard deviation in pixels (0: x unchanged).
      truncate: kernel radius in standard deviations.
    """
    if sigma <= 0:
        return x
    n, h, w, ch = x.shape
    k = jnp.asarray(gaussian_kernel(sigma, truncate=truncate), x.dtype)
    r = min(k.shape[0] // 2, h - 1, w - 1)
    k = k[k.shape[0] // 2 - r : k.shape[0] // 2 + r + 1]
    k = k / k.sum()
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
    xp = xp.transpose(0, 3, 1, 2).reshape(n * ch, 1, h + 2 * r, w + 2 * r)
    dn = ("NCHW", "OIHW", "NCHW")
    conv = jax.lax.conv_general_dilated
    out = conv(xp, k.reshape(1, 1, -1, 1), (1, 1), "VALID", dimension_numbers=dn)
    out = conv(out, k.reshape(1, 1, 1, -1), (1, 1), "VALID", dimension_numbers=dn)
    return out.reshape(n, ch, h, w).transpose(0, 2, 3, 1)


@dataclasses.dataclass(frozen=True)
class constant:  # noqa: N801 (used like a function)
    """A constant reference, e.g. 0 (the data mean after normalisation) or the black canvas."""

    value: float = 0.0
    needs_key = False

    def __call__(self, x: jax.Array, key=None) -> jax.Array:
        return jnp.full_like(x, self.value)


@dataclasses.dataclass(frozen=True)
class blur:  # noqa: N801
    """The image blurred with a Gaussian of `sigma` pixels (10 at 224 px in Fong & Vedaldi)."""

    sigma: float = 10.0
    needs_key = False

    def __call__(self, x: jax.Array, key=None) -> jax.Array:
        return gaussian_blur(x, self.sigma)


@dataclasses.dataclass(frozen=True)
class uniform:  # noqa: N801
    """Uniform noise U(low, high) per pixel and channel (the DSSR paper's U(0, 1))."""

    low: float = 0.0
    high: float = 1.0
    needs_key = True

    def __call__(self, x: jax.Array, key=None) -> jax.Array:
        if key is None:
            raise ValueError("a uniform-noise reference needs key=jax.random.key(...)")
        return jax.random.uniform(key, x.shape, x.dtype, self.low, self.high)


NAMED = {"zero": constant(0.0), "blur": blur(), "uniform": uniform()}


def make_reference(reference, x: jax.Array, key) -> jax.Array:
    """The reference image for the batch `x`: see the module docstring for what `reference` may be."""
    if isinstance(reference, str):
        if reference not in NAMED:
            raise ValueError(
                f'unknown reference "{reference}"; use {", ".join(NAMED)}, a number, an array '
                "shaped like x, or references.constant / blur / uniform"
            )
        reference = NAMED[reference]
    if callable(reference):
        if key is not None or getattr(reference, "needs_key", False):
            from jaxsal.checks import check_key

            key = check_key(key, "this reference (noise)")
        return jnp.asarray(reference(x, key), x.dtype)
    r = jnp.asarray(reference, x.dtype)
    if r.ndim not in (0, x.ndim):
        raise ValueError(
            f"a reference array must be a number or shaped like x {x.shape}, got {r.shape}"
        )
    return jnp.broadcast_to(r, x.shape)


def scaled(value: float, size: int, *, base: int = 224) -> float:
    """A pixel constant given for `base`-pixel images, scaled to `size` pixels."""
    return value * size / base
