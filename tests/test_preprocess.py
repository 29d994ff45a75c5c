"""ImageNet preprocessing against torchvision's tensor transforms on scikit-image's photos.

Cropping and normalising must match torchvision exactly; the antialiased resize is the same
algorithm (1e-12 in float64) and differs by float32 rounding only (RESIZE_ATOL).
torchvision runs its tensor path: `ToTensor()` first, then the transforms on float tensors.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import torch
from torch_ref import torchvision

from jaxsal import preprocess as pre

PHOTOS = ("chelsea", "coffee", "astronaut")  # 300x451, 400x600, 512x512 uint8 RGB
# float32 on [0, 1] pixels: measured at most 3.0e-5 under x64 (torchvision's own float32
# rounding; see resize_shorter's docstring), 1.0e-5 in JAX's default 32-bit mode.
RESIZE_ATOL = 4e-5
PIPELINE_ATOL = RESIZE_ATOL / min(pre.IMAGENET_STD)  # the resize error, divided by std
EXACT = 1e-6


@functools.cache
def photo(name: str) -> np.ndarray:
    return getattr(skimage.data, name)()


def T():
    return torchvision().transforms


def to_chw(x) -> torch.Tensor:
    return torch.from_numpy(np.array(x)).permute(2, 0, 1)


def to_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(*range(t.ndim - 3), -2, -1, -3).numpy()


@pytest.mark.parametrize("name", PHOTOS)
def test_to_float_is_to_tensor(name):
    x = pre.to_float(photo(name))
    assert x.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), to_hwc(T().ToTensor()(photo(name))))


def test_to_float_grey_and_float():
    grey = photo("chelsea")[..., 0]
    np.testing.assert_array_equal(np.asarray(pre.to_float(grey)), grey[..., None] / np.float32(255))
    f = np.linspace(0.0, 1.0, 24).reshape(2, 4, 3)
    out = pre.to_float(f)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), f, atol=EXACT)


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("size", [256, 97, 600])  # shrink, shrink a lot, enlarge
def test_resize_matches_torchvision(name, size):
    t = T().ToTensor()(photo(name))
    want = to_hwc(T().Resize(size, antialias=True)(t))
    got = pre.resize_shorter(jnp.asarray(to_hwc(t)), size)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=RESIZE_ATOL)
    # In float64 the two are the same algorithm: only summation order differs.
    want64 = to_hwc(T().Resize(size, antialias=True)(t.double()))
    got64 = pre.resize_shorter(jnp.asarray(to_hwc(t.double())), size)
    np.testing.assert_allclose(np.asarray(got64), want64, rtol=0, atol=1e-12)


def test_resize_batch_jit_and_identity():
    x = jnp.asarray(np.random.default_rng(0).random((2, 12, 17, 3)), jnp.float32)
    f = jax.jit(pre.resize_shorter, static_argnums=1)
    out = f(x, 5)
    assert out.shape == (2, 5, 7, 3)  # int(5 * 17 / 12) = 7, truncated as torchvision
    np.testing.assert_allclose(
        np.asarray(out[1]), np.asarray(pre.resize_shorter(x[1], 5)), atol=EXACT
    )
    assert pre.resize_shorter(x, 12) is x  # shorter side already right: unchanged


@pytest.mark.parametrize(
    "shape,size",
    [
        ((7, 10), 4),  # offsets round(1.5) = 2, round(3.0) = 3
        ((8, 9), 3),  # round(2.5) = 2 (half to even), round(3.0) = 3
        ((9, 12), (4, 7)),  # (height, width)
        ((5, 6), 8),  # larger than the image: zero padding first
        ((5, 12), (8, 3)),  # padding along one side only
        ((4, 4), 4),
    ],
)
def test_center_crop_matches_torchvision(shape, size):
    x = np.random.default_rng(1).random((*shape, 3)).astype(np.float32)
    want = to_hwc(T().CenterCrop(size)(to_chw(x)))
    got = pre.center_crop(jnp.asarray(x), size)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=EXACT)
    batch = jax.jit(pre.center_crop, static_argnums=1)(jnp.asarray(np.stack([x, x])), size)
    np.testing.assert_allclose(np.asarray(batch[1]), want, rtol=0, atol=EXACT)


def test_normalize_matches_torchvision_and_inverts():
    x = np.random.default_rng(2).random((2, 6, 5, 3)).astype(np.float32)
    want = to_hwc(T().Normalize(pre.IMAGENET_MEAN, pre.IMAGENET_STD)(to_chw(x[0])))
    np.testing.assert_allclose(np.asarray(pre.normalize(x[0])), want, rtol=0, atol=EXACT)
    batch = jax.jit(pre.normalize)(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(batch[0]), want, rtol=0, atol=EXACT)
    np.testing.assert_allclose(np.asarray(pre.denormalize(batch)), x, rtol=0, atol=EXACT)
    mean, std = (0.5, 0.2), (0.1, 2.0)
    two = x[..., :2]
    np.testing.assert_allclose(
        np.asarray(pre.normalize(two, mean=mean, std=std)),
        (two - mean) / np.float32(std),
        atol=EXACT,
    )


def torchvision_pipeline(image: np.ndarray) -> np.ndarray:
    tf = T().Compose(
        [
            T().ToTensor(),
            T().Resize(256, antialias=True),
            T().CenterCrop(224),
            T().Normalize(pre.IMAGENET_MEAN, pre.IMAGENET_STD),
        ]
    )
    return to_hwc(tf(image))


def test_imagenet_preprocess_matches_torchvision():
    images = [photo(n) for n in PHOTOS]  # three sizes in one list
    got = pre.imagenet_preprocess(images)
    assert got.shape == (3, 224, 224, 3) and got.dtype == jnp.float32
    for g, image in zip(got, images, strict=True):
        np.testing.assert_allclose(np.asarray(g), torchvision_pipeline(image), atol=PIPELINE_ATOL)


@pytest.mark.parametrize("name", PHOTOS)
def test_crop_and_normalize_exact_after_resize(name):
    """Given torchvision's resized image, crop and normalise match it to 1e-6."""
    t = T().Resize(256, antialias=True)(T().ToTensor()(photo(name)))
    want = to_hwc(T().Normalize(pre.IMAGENET_MEAN, pre.IMAGENET_STD)(T().CenterCrop(224)(t)))
    got = pre.normalize(pre.center_crop(jnp.asarray(to_hwc(t)), 224))
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=EXACT)


def test_imagenet_preprocess_batch_grey_and_sizes():
    a = photo("astronaut")[::4, ::4]  # 128x128
    batch = pre.imagenet_preprocess(np.stack([a, a[::-1]]), size=64, resize=80)
    assert batch.shape == (2, 64, 64, 3)
    one = pre.imagenet_preprocess(a[::-1], size=64, resize=80)
    np.testing.assert_allclose(np.asarray(batch[1:]), np.asarray(one), atol=EXACT)
    grey = pre.imagenet_preprocess(a[..., 0], size=64, resize=80)
    rgb = pre.imagenet_preprocess(np.repeat(a[..., :1], 3, axis=-1), size=64, resize=80)
    np.testing.assert_allclose(np.asarray(grey), np.asarray(rgb), atol=EXACT)


def test_imagenet_display_inverts():
    x = pre.imagenet_preprocess(photo("coffee"))
    t = pre.center_crop(pre.resize_shorter(pre.to_float(photo("coffee")), 256), 224)
    np.testing.assert_allclose(np.asarray(pre.imagenet_display(x)[0]), np.asarray(t), atol=EXACT)
    out = pre.imagenet_display(jnp.full((2, 2, 3), 10.0))  # clipped, batch axis added
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(out), 1.0)


def u8(*shape):
    return np.zeros(shape, np.uint8)


def f32(value, shape=(4, 4, 3)):
    return np.full(shape, value, np.float32)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: pre.to_float(u8(2, 3, 4, 5, 3)), ValueError, r"rank 5: expected \(H, W\)"),
        (lambda: pre.to_float(u8(2, 8, 8, 3)), ValueError, "a batch; pass one image"),
        (lambda: pre.to_float(u8(3, 32, 32)), ValueError, r"channels-first.*np.moveaxis"),
        (lambda: pre.to_float(u8(8, 8, 4)), ValueError, r"RGBA\?\); drop alpha"),
        (lambda: pre.to_float(u8(8, 8, 5)), ValueError, r"5 channels; expected 1 .* or 3"),
        (lambda: pre.to_float(u8(0, 8, 3)), ValueError, "is empty"),
        (lambda: pre.to_float(np.zeros((4, 4, 3), np.int64)), TypeError, "int64 is not supp"),
        (lambda: pre.to_float(f32(np.nan)), ValueError, "NaN or infinite"),
        (lambda: pre.to_float(f32(2.0)), ValueError, r"\[0, 1\], found \[2, 2\].*divide by 255"),
        (lambda: pre.to_float(f32(-0.5)), ValueError, "normalised input.*imagenet_display"),
        (lambda: pre.to_float(f32(300.0)), ValueError, "rescale to"),
        (lambda: pre.imagenet_preprocess(u8(2, 3, 9, 9)), ValueError, r"\(N, C, H, W\)"),
        (lambda: pre.imagenet_preprocess([]), ValueError, "empty list"),
        (lambda: pre.imagenet_preprocess([u8(9, 9, 3), f32(2.0)]), ValueError, "^image 1: "),
        (lambda: pre.imagenet_preprocess(u8(9, 9, 3), size=0), ValueError, "positive int"),
        (lambda: pre.resize_shorter(u8(9, 9, 3), 4), TypeError, "to_float first"),
        (lambda: pre.resize_shorter(f32(0.0, (9, 9)), 4), ValueError, "add a channel"),
        (lambda: pre.center_crop(f32(0.0), 2.5), ValueError, "positive int, got 2.5"),
        (lambda: pre.normalize(f32(0.0, (4, 4, 1))), ValueError, "one value per channel"),
        (lambda: pre.imagenet_display(f32(0.0, (4, 3))), ValueError, r"got shape \(4, 3\)"),
    ],
)
def test_bad_inputs_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()
