"""Photo preprocessing for torchvision-style (ImageNet) models, and its inverse for display.

`imagenet_preprocess` is torchvision's tensor pipeline
`Compose([ToTensor(), Resize(256), CenterCrop(224), Normalize(IMAGENET_MEAN, IMAGENET_STD)])`
(antialiased bilinear resize, as torchvision does by default on tensors), transposed to NHWC.
The steps are public so that other sizes or statistics can be composed:

    x = normalize(center_crop(resize_shorter(to_float(photo), 256), 224))

Images are (H, W, C) and batches (N, H, W, C), channels last as in the rest of jaxsal.
`to_float` checks its input on the host (it reads the values); the other steps are
jittable with their sizes static.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet on [0, 1] pixels (torchvision's `Normalize` values)."""

IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet on [0, 1] pixels."""

_CHANNELS = (1, 3)


def _layout_error(shape: tuple[int, ...]) -> str | None:
    """Why an (H, W, C) image of this shape is not one, or None if it is."""
    if len(shape) == 2:
        return None
    if len(shape) != 3:
        hint = (
            "a batch; pass one image, or the batch to imagenet_preprocess"
            if len(shape) == 4
            else "expected (H, W) or (H, W, C)"
        )
        return f"image of shape {shape} has rank {len(shape)}: {hint}"
    c = shape[-1]
    if c in _CHANNELS:
        return None
    if shape[0] in _CHANNELS:
        return (
            f"image of shape {shape} looks channels-first (C, H, W); jaxsal uses channels-last "
            "(H, W, C): pass np.moveaxis(image, 0, -1)"
        )
    if c == 4:
        return f"image of shape {shape} has 4 channels (RGBA?); drop alpha with image[..., :3]"
    return f"image of shape {shape} has {c} channels; expected 1 (grey) or 3 (RGB)"


def to_float(image) -> jax.Array:
    """An image as float32 pixels in [0, 1], channels last.

    Args:
      image: one image, (H, W) or (H, W, C) with C in {1, 3}: uint8 in [0, 255] (as read from
        a file; a PIL image works too) or floating point in [0, 1]. Not a batch.

    Returns:
      float32 (H, W, C) in [0, 1]; a grey (H, W) image becomes (H, W, 1). uint8 pixels are
      divided by 255 in float32, as `ToTensor` does.

    Raises:
      ValueError: wrong rank, a channels-first (C, H, W) or RGBA layout, an empty image,
        NaN or infinite values, or float values outside [0, 1].
      TypeError: a dtype other than uint8 or floating point.
    """
    x = np.asarray(image)
    if (why := _layout_error(x.shape)) is not None:
        raise ValueError(why)
    if x.size == 0:
        raise ValueError(f"image of shape {x.shape} is empty")
    if x.ndim == 2:
        x = x[..., None]
    if x.dtype == np.uint8:
        return jnp.asarray(x.astype(np.float32) / np.float32(255))
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"image dtype {x.dtype} is not supported; pass uint8 in [0, 255] or float in [0, 1] "
            "(e.g. image.astype(np.uint8) for 8-bit pixels stored as integers)"
        )
    if not np.isfinite(x).all():
        raise ValueError("image has NaN or infinite values; replace them (np.nan_to_num)")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        if lo >= 0.0 and hi <= 255.0:
            fix = "8-bit values stored as float? divide by 255 or pass uint8"
        elif lo < 0.0:
            fix = "a normalised input? undo it with imagenet_display, or clip to [0, 1]"
        else:
            fix = "rescale to [0, 1]"
        raise ValueError(
            f"float image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]: {fix}"
        )
    return jnp.asarray(x, jnp.float32)


def _check_size(size, name: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return int(size)


def _check_image(x: jax.Array, fn: str) -> None:
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{fn} takes (H, W, C) or (N, H, W, C), got shape {x.shape}; "
            "add a channel axis with to_float"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn} takes float pixels, got {x.dtype}; convert with to_float first")


def _resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's output size: the shorter side `size`, the longer `int(size * long / short)`."""
    size = _check_size(size, "size")
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def resize_shorter(image: jax.Array, size: int) -> jax.Array:
    """Resizes so that the shorter side is `size`, keeping the aspect ratio.

    The same algorithm as torchvision's `transforms.Resize(size)` on a float tensor
    (bilinear, `antialias=True`: a triangle filter widened by the downscaling factor, with
    half-pixel centres): on float64 images the two agree to 1e-13. On float32 images they
    differ by rounding only. Measured on `skimage.data`'s chelsea, coffee and astronaut
    resized to 14 sizes from 64 to 1000 (both shrinking and enlarging), the largest
    difference from torchvision's float32 result on [0, 1] pixels is 1.0e-5 with JAX's
    default 32-bit mode and 3.0e-5 with `jax_enable_x64`, where JAX computes the filter
    weights in float64 and lands within 2.1e-7 of torchvision's float64 result (the 3e-5 is
    torchvision's own float32 error). Either is under 0.01 of an 8-bit level. An image whose
    shorter side is already `size` is returned unchanged, as torchvision does.

    Args:
      image: float (H, W, C) or (N, H, W, C).
      size: the new length of the shorter side.

    Returns:
      The resized image, same dtype; the longer side becomes
      `int(size * long / short)` (truncated), as in torchvision.
    """
    x = jnp.asarray(image)
    _check_image(x, "resize_shorter")
    h, w = x.shape[-3:-1]
    new = _resized_shape(h, w, size)
    if new == (h, w):
        return x
    return jax.image.resize(x, (*x.shape[:-3], *new, x.shape[-1]), "linear", antialias=True)


def center_crop(image: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """The central `size` crop, as torchvision's `CenterCrop`.

    The offsets are `int(round((h - crop_h) / 2.0))` (Python's round, half to even), like
    torchvision; an image smaller than the crop is first padded with zeros, `(d // 2)` before
    and `((d + 1) // 2)` after along each short side, again like torchvision.

    Args:
      image: (H, W, C) or (N, H, W, C).
      size: crop side, or (crop height, crop width).

    Returns:
      (size, size, C) or (N, size, size, C) (or the (height, width) given).
    """
    x = jnp.asarray(image)
    _check_image(x, "center_crop")
    ch, cw = (size, size) if not isinstance(size, Sequence) else tuple(size)
    ch, cw = _check_size(ch, "crop height"), _check_size(cw, "crop width")
    h, w = x.shape[-3:-1]
    if ch > h or cw > w:
        dh, dw = max(ch - h, 0), max(cw - w, 0)
        pad = [(0, 0)] * (x.ndim - 3) + [(dh // 2, (dh + 1) // 2), (dw // 2, (dw + 1) // 2), (0, 0)]
        x = jnp.pad(x, pad)
        h, w = x.shape[-3:-1]
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return x[..., top : top + ch, left : left + cw, :]


def _stats(x: jax.Array, mean, std) -> tuple[jax.Array, jax.Array]:
    mean = jnp.asarray(mean, x.dtype)
    std = jnp.asarray(std, x.dtype)
    c = x.shape[-1]
    if mean.shape != (c,) or std.shape != (c,):
        raise ValueError(
            f"mean {mean.shape} and std {std.shape} need one value per channel ({c}); "
            "convert a grey image to RGB first"
        )
    shape = (1,) * (x.ndim - 1) + (c,)  # explicit rank: works with rank promotion "raise"
    return mean.reshape(shape), std.reshape(shape)


def normalize(image: jax.Array, *, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
    """`(image - mean) / std` per channel, as torchvision's `Normalize`.

    Args:
      image: float (..., C) pixels in [0, 1], e.g. (H, W, C) or (N, H, W, C).
      mean: per-channel means.
      std: per-channel standard deviations.

    Returns:
      The normalised image, same shape and dtype.
    """
    x = jnp.asarray(image)
    _check_image(x, "normalize")
    mean, std = _stats(x, mean, std)
    return (x - mean) / std


def denormalize(x: jax.Array, *, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
    """The inverse of `normalize`: `x * std + mean` per channel (no clipping).

    Args:
      x: normalised (..., C), e.g. (H, W, C) or (N, H, W, C).
      mean: per-channel means used by `normalize`.
      std: per-channel standard deviations used by `normalize`.

    Returns:
      Pixels on the original scale, same shape and dtype.
    """
    x = jnp.asarray(x)
    _check_image(x, "denormalize")
    mean, std = _stats(x, mean, std)
    return x * std + mean


def _as_images(images) -> list:
    """One image, a (N, H, W, C) batch or a sequence of images, as a list of images."""
    if isinstance(images, list | tuple):
        if not images:
            raise ValueError("no images given (an empty list)")
        return list(images)
    x = np.asarray(images)
    if x.ndim == 4:
        if x.shape[1] in _CHANNELS and x.shape[-1] not in _CHANNELS:
            raise ValueError(
                f"batch of shape {x.shape} looks channels-first (N, C, H, W); jaxsal uses "
                "channels-last (N, H, W, C): pass np.moveaxis(images, 1, -1)"
            )
        return list(x)
    return [x]


def imagenet_preprocess(images, *, size: int = 224, resize: int = 256) -> jax.Array:
    """Photos as ImageNet model inputs: torchvision's standard evaluation transform.

    Each image goes through `to_float`, grey to RGB (channel repeated, like PIL's
    `convert("RGB")`), `resize_shorter(resize)`, `center_crop(size)` and `normalize` with the
    ImageNet statistics: torchvision's
    `Compose([ToTensor(), Resize(resize), CenterCrop(size), Normalize(mean, std)])` on tensors,
    in NHWC (equal up to the float32 rounding stated in `resize_shorter`). torchvision's
    PIL path differs more: PIL resizes 8-bit pixels and rounds them.

    Args:
      images: one image ((H, W) or (H, W, C)), a (N, H, W, C) batch, or a list of images of
        any sizes; each uint8 in [0, 255] or float in [0, 1], as `to_float` takes.
      size: side of the square centre crop.
      resize: length the shorter side is resized to before cropping.

    Returns:
      float32 (N, size, size, 3), normalised.
    """
    size, resize = _check_size(size, "size"), _check_size(resize, "resize")
    out = []
    for i, image in enumerate(_as_images(images)):
        try:
            x = to_float(image)
        except (ValueError, TypeError) as e:
            raise type(e)(f"image {i}: {e}") from None
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        out.append(normalize(center_crop(resize_shorter(x, resize), size)))
    return jnp.stack(out)


def imagenet_display(x: jax.Array) -> jax.Array:
    """Normalised ImageNet inputs back to showable pixels: `denormalize`, then clip to [0, 1].

    Args:
      x: normalised (H, W, 3) or (N, H, W, 3), e.g. from `imagenet_preprocess`.

    Returns:
      float (N, H, W, 3) in [0, 1] (a single image gains a batch axis of 1).
    """
    x = jnp.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"imagenet_display takes (H, W, 3) or (N, H, W, 3), got shape {x.shape}")
    return jnp.clip(denormalize(x), 0.0, 1.0)
