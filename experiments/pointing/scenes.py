"""The explained images: single digits and two-class composites of the version-2 scenes.

`explanation_set(config)` lists every explanation as one row: the image, the
class explained, the boxes of that class ("own", up to two) and of the other
class in the image ("other"; none for a single digit), padded with empty boxes
`(0, 0, 0, 0)`, which `jaxsal.pointing` ignores. Single digits come first,
then each composite twice (explaining class a, then class b).
"""

from __future__ import annotations

import numpy as np

from experiments.pointing.config import ScenesConfig
from jaxsal.data import PHOTO_MEAN, PHOTO_STD, photo_composites, photo_scenes

SINGLE, COMPOSITE = 0, 1
MEAN, STD = PHOTO_MEAN, PHOTO_STD


def _pad(boxes: np.ndarray, k: int = 2) -> np.ndarray:
    out = np.zeros((k, 4), np.int32)
    out[: len(boxes)] = boxes
    return out


def explanation_set(config: ScenesConfig) -> dict[str, np.ndarray]:
    """Every explanation of the study: {"x", "c", "own", "other", "kind", "canvas", "scene"}.

    Returns:
      x (N, H, W, 1) normalised images, c (N,) classes, own and other (N, 2, 4) boxes,
      kind (N,) `SINGLE` or `COMPOSITE`, canvas (N, H, W) pixels in [0, 1] for figures,
      scene (N,) the index of the image among its kind.
    """
    rows = {k: [] for k in ("x", "c", "own", "other", "kind", "canvas", "scene")}

    def add(x, c, own, other, kind, canvas, scene):
        for k, v in zip(rows, (x, c, _pad(own), _pad(other), kind, canvas, scene)):
            rows[k].append(v)

    if config.singles:
        s = photo_scenes(config.split, size=config.size, seed=config.seed, n=config.singles)
        canvas = s.canvas()
        for i in range(len(s)):
            add(s.images[i], s.labels[i], s.boxes[i][None], np.zeros((0, 4)), SINGLE,
                canvas[i], i)  # fmt: skip
    counts = np.bincount(np.arange(config.composites) % len(config.pairs),
                         minlength=len(config.pairs))  # fmt: skip
    j = 0
    for p, (pair, n) in enumerate(zip(config.pairs, counts)):
        if not n:
            continue
        s = photo_composites(config.split, classes=tuple(pair), size=config.size,
                             seed=(config.seed, p), n=int(n))  # fmt: skip
        canvas = s.canvas()
        for i in range(len(s)):
            for a, b in (pair, pair[::-1]):
                own, other = s.boxes[i][s.labels[i] == a], s.boxes[i][s.labels[i] == b]
                add(s.images[i], a, own, other, COMPOSITE, canvas[i], j)
            j += 1
    if not rows["x"]:
        raise ValueError("the study needs scenes: set ScenesConfig.singles or .composites")
    return {k: np.stack(v) if k in ("x", "own", "other", "canvas") else np.asarray(v)
            for k, v in rows.items()}  # fmt: skip
