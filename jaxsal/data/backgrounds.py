"""Backgrounds of the photo scenes: random crops of the photographs that scikit-image ships.

Grey (RGB photos converted to luminance by `skimage.color.rgb2gray`), in
[0, 1]. Each split draws on a disjoint set of whole photographs (`PHOTOS`), each mixing
textures and structured scenes:

- train (11): astronaut, rocket, camera, clock (scenes and objects), brick, moon
  (textures), text (print), cell, immunohistochemistry (microscopy), retina (fundus),
  hubble_deep_field (sparse stars on black).
- validation (3): coffee (scene), grass (texture), page (print).
- test (3): chelsea (scene), gravel (texture), coins (objects).

A background picks a photo of the split uniformly, rescales it by one of `LEVELS` factors
spaced geometrically over [0.35, 1] of its resolution (anti-aliased, computed once per photo
and size), flips it horizontally with probability 1/2, cuts a uniformly placed
`size` x `size` crop, turns it by a random multiple of 90 degrees and, with probability
1/2, takes its photographic negative (1 - pixel): every split sees its textures in every
orientation and polarity, so a model cannot key on "dark digits mean a bright photo".
The crop is then faded around mid-grey by `BACKGROUND_CONTRAST` (0.5: pixels in [0.25,
0.75]), keeping its structure, edges and texture, so that the ink (below 0.15 or above
0.85) stays the strongest contrast of the scene: a small CNN then reaches MNIST-like
accuracy on digits it must still find among the photo's edges (docs/fooling.md). There is
no per-crop normalisation. The smallest factor is raised where the photo would get smaller than the canvas, so page and
text are never shrunk below `size`; photos smaller than `size` are enlarged instead.
"""

from __future__ import annotations

import functools

import numpy as np

BACKGROUND_CONTRAST = 0.5  # photos faded around mid-grey: the ink is always the extreme
PHOTOS = {
    "train": (
        "astronaut",
        "rocket",
        "camera",
        "clock",
        "brick",
        "moon",
        "text",
        "cell",
        "immunohistochemistry",
        "retina",
        "hubble_deep_field",
    ),
    "validation": ("coffee", "grass", "page"),
    "test": ("chelsea", "gravel", "coins"),
}
LEVELS = 6  # rescale factors per photo, geometric over SCALES
SCALES = (0.35, 1.0)


@functools.cache
def _photo(name: str) -> np.ndarray:
    from skimage import color, data

    img = getattr(data, name)()
    grey = color.rgb2gray(img) if img.ndim == 3 else img / 255.0
    return grey.astype(np.float32)


@functools.cache
def _pyramid(name: str, size: int) -> tuple[np.ndarray, ...]:
    """The photo rescaled by the `LEVELS` factors, each at least `size` on both sides."""
    from skimage.transform import resize

    img = _photo(name)
    h, w = img.shape
    lo = max(SCALES[0], size / min(h, w))
    hi = max(SCALES[1], lo)
    levels = []
    for f in np.geomspace(lo, hi, LEVELS):
        shape = (max(size, round(h * f)), max(size, round(w * f)))
        out = img if shape == img.shape else resize(img, shape, order=1, anti_aliasing=f < 1)
        out = np.asarray(out, np.float32)
        out.setflags(write=False)
        levels.append(out)
    return tuple(levels)


def backgrounds(split: str, size: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """n random crops (n, size, size) float32 in [0, 1] of the split's rescaled photos."""
    names = PHOTOS[split]
    photo = rng.integers(0, len(names), n)
    level = rng.integers(0, LEVELS, n)
    flip = rng.random(n) < 0.5
    where = rng.random((n, 2))
    out = np.empty((n, size, size), np.float32)
    for p, name in enumerate(names):
        for lv, img in enumerate(_pyramid(name, size)):
            idx = np.flatnonzero((photo == p) & (level == lv))
            if not len(idx):
                continue
            room = np.array(img.shape) - size + 1
            y0, x0 = (where[idx] * room).astype(np.int64).T
            out[idx] = np.lib.stride_tricks.sliding_window_view(img, (size, size))[y0, x0]
    out[flip] = out[flip, :, ::-1]
    turns = rng.integers(0, 4, n)  # quarter turns: textures seen in every orientation
    for k in (1, 2, 3):
        out[turns == k] = np.rot90(out[turns == k], k, axes=(1, 2))
    invert = rng.random(n) < 0.5  # the photographic negative: light and dark swap roles
    out[invert] = 1.0 - out[invert]
    return 0.5 + BACKGROUND_CONTRAST * (out - 0.5)
