"""The pointing game and class discrimination of saliency maps, scored against boxes.

Pointing game: a map hits when its maximum lies within `tolerance` pixels of
a ground-truth box of the explained class (any of them, when the class has
several instances); the accuracy is `hits / (hits + misses)`, per class and
averaged over classes. Ties go to the first maximum in row-major order.

Class discrimination (two objects of different classes A and B in one image):
when explaining A, how much of the map's mass lies in A's box and in B's box,
and whether its maximum falls in B's box.

Boxes are half-open `(y0, x0, y1, x1)` pixel boxes; the distance from a pixel
to a box is the Euclidean distance to the box's nearest pixel.

References:
  Zhang, Bargal, Lin, Brandt, Shen and Sclaroff. Top-down neural attention
  by excitation backprop. ECCV 2016 / IJCV 2018 (the pointing game, 15 px).
  Gu, Yang and Tresp (2020), section 4.2 and Table 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 15
# Published pointing accuracies on PASCAL VOC07 test (all images), SPEC.md section 4.
PUBLISHED = {
    "vgg16": {"gradcam": 86.6, "rise": 86.9, "extremal": 88.0, "gradient": 76.3, "centre": 69.6},
    "resnet50": {"gradcam": 90.4, "rise": 86.4, "extremal": 88.9, "gradient": 72.3,
                 "centre": 69.6},
    "dssr_plus (resnet34)": {"dssr_plus": 85.3},
}  # fmt: skip


def _maps2d(maps) -> np.ndarray:
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (N, H, W) or (N, H, W, 1), got {maps.shape}")
    return maps


def _box_lists(boxes, n: int) -> list[np.ndarray]:
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
        boxes = boxes[:, None]
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
    if len(boxes) != n:
        raise ValueError(f"need one box set per map: {n} maps but {len(boxes)} box sets")
    return boxes


def peaks(maps) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each map's maximum (the first in row-major order), (N,) each."""
    maps = _maps2d(maps)
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return np.unravel_index(flat, maps.shape[1:])


def distance_to_boxes(py, px, boxes: np.ndarray) -> np.ndarray:
    """Distance from pixel (py, px) to the nearest of `boxes` (K, 4); inf if K = 0."""
    if len(boxes) == 0:
        return np.inf
    dy = np.maximum(np.maximum(boxes[:, 0] - py, py - (boxes[:, 2] - 1)), 0)
    dx = np.maximum(np.maximum(boxes[:, 1] - px, px - (boxes[:, 3] - 1)), 0)
    return float(np.hypot(dy, dx).min())


def pointing_hits(maps, boxes, *, tolerance: float = TOLERANCE) -> np.ndarray:
    """Is each map's maximum within `tolerance` pixels of one of its boxes? (N,) bool.

    Args:
      maps: (N, H, W) or (N, H, W, 1) saliency maps.
      boxes: (N, 4), or a sequence of (K_i, 4) arrays (every box of the explained
        class in image i; a hit near any counts).
      tolerance: pixels (15 in the pointing game at VOC's resolution).

    Returns:
      Boolean hits, (N,).
    """
    py, px = peaks(maps)
    box_sets = _box_lists(boxes, len(py))
    return np.array([distance_to_boxes(y, x, b) <= tolerance
                     for y, x, b in zip(py, px, box_sets)])  # fmt: skip


def centre_maps(n: int, shape: tuple[int, int]) -> np.ndarray:
    """The centre baseline: maps whose only maximum is the image's centre pixel, (N, H, W)."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    m = -np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    return np.broadcast_to(m, (n, h, w))


def pointing_accuracy(hits, classes) -> dict[str, float | dict[int, float]]:
    """Pointing accuracy overall, per class, and the mean over classes (the paper's figure).

    Args:
      hits: (N,) booleans from `pointing_hits`.
      classes: (N,) the class explained by each map.

    Returns:
      {"overall", "mean_over_classes", "per_class": {class: accuracy}, "n"}.
    """
    hits, classes = np.asarray(hits, bool), np.asarray(classes)
    per = {int(k): float(hits[classes == k].mean()) for k in np.unique(classes)}
    return {
        "overall": float(hits.mean()) if hits.size else float("nan"),
        "mean_over_classes": float(np.mean(list(per.values()))) if per else float("nan"),
        "per_class": per,
        "n": int(hits.size),
    }


def mass_in_boxes(maps, boxes) -> np.ndarray:
    """Share of each map's non-negative mass inside the union of its boxes, (N,); 0 if empty."""
    maps = np.maximum(_maps2d(maps), 0.0)
    box_sets = _box_lists(boxes, len(maps))
    out = np.zeros(len(maps))
    for i, (m, bs) in enumerate(zip(maps, box_sets)):
        inside = np.zeros(m.shape, bool)
        for y0, x0, y1, x1 in bs.astype(int):
            inside[y0:y1, x0:x1] = True
        total = m.sum()
        out[i] = m[inside].sum() / total if total > 0 else 0.0
    return out


def class_discrimination(maps, own_boxes, other_boxes) -> dict[str, np.ndarray]:
    """How well maps for class A avoid the box of another class B in the same image.

    Args:
      maps: (N, H, W) maps, each explaining the class of `own_boxes`.
      own_boxes: (N, 4) or per-image (K, 4) boxes of the explained class.
      other_boxes: the same for the other class.

    Returns:
      Per map (N,): "own_mass" and "other_mass" (shares of the non-negative
      mass in each class's boxes), "discrimination" (own / (own + other), 0.5
      when neither holds mass), "peak_in_other" (the maximum lies inside the
      other class's box) and "peak_in_own".
    """
    own, other = mass_in_boxes(maps, own_boxes), mass_in_boxes(maps, other_boxes)
    both = own + other
    disc = np.where(both > 0, own / np.where(both > 0, both, 1.0), 0.5)
    return {
        "own_mass": own,
        "other_mass": other,
        "discrimination": disc,
        "peak_in_own": pointing_hits(maps, own_boxes, tolerance=0.0),
        "peak_in_other": pointing_hits(maps, other_boxes, tolerance=0.0),
    }


def scaled_tolerance(size: int, *, tolerance: float = TOLERANCE, base: int = 224) -> float:
    """The pointing tolerance given for `base`-pixel images, scaled to `size` pixels."""
    return tolerance * size / base


def boxes_of_class(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], cls) -> list:
    """Per image, the boxes (K, 4) whose label is `cls` (a class per image or one for all)."""
    cls = np.broadcast_to(np.asarray(cls), (len(boxes),))
    return [np.asarray(b).reshape(-1, 4)[np.asarray(lab) == k]
            for b, lab, k in zip(boxes, labels, cls)]  # fmt: skip
