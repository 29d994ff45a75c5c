"""The pointing game, box energy and class discrimination of saliency maps, scored against boxes.

Pointing game: a map hits when its peak lies within `tolerance` pixels of a
ground-truth box of the explained class (any of them, when the class has
several instances); the accuracy is `hits / (hits + misses)`, per class and
averaged over classes.

Ties. Maps with a plateau of equal maxima are common (an optimised mask
clipped at 0 or 1 on many pixels, a saturated heatmap), and the rule that
picks "the" peak among them decides the score. `ties` chooses it:

- "centroid" (the default): the mean row and column of the tied maxima, a
  possibly fractional position; deterministic, and on a single plateau its
  centre. With maxima scattered over the image it lands between them, which
  can be on none of them: such a map points nowhere in particular.
- "random": one of the tied maxima, uniformly, drawn with `seed` (required);
  the expected hit rate is the share of tied maxima near a box.
- "first": the first maximum in row-major order (NumPy's argmax; what the
  pointing game scored before ties were handled, biased to the top-left).

Pixels count as tied when they are within `atol` of the map's maximum
(default 0: exactly equal). A unique maximum is picked by every rule.

Energy in the box: the share of a map's mass inside the union of the boxes
after a per-map min-max normalisation (`normalise_maps`, the normalisation
Gu et al. apply to RISE and Grad-CAM), so a constant floor does not count
(the energy-based pointing game of Score-CAM). Class discrimination (objects
of two classes A and B in one image): when explaining A, the energy in A's
boxes and in B's, and whether the peak falls in A's or B's boxes.

Boxes are half-open `(y0, x0, y1, x1)` pixel boxes; the distance from a
point to a box is the Euclidean distance to the box's nearest pixel centre
(rows y0 .. y1 - 1, columns x0 .. x1 - 1), so a fractional centroid between
two pixels is 0.5 px from a box that starts at the second.

References:
  Zhang, Bargal, Lin, Brandt, Shen and Sclaroff. Top-down neural attention
  by excitation backprop. ECCV 2016 / IJCV 2018 (the pointing game, 15 px).
  Wang et al. Score-CAM: score-weighted visual explanations for convolutional
  neural networks. CVPR workshops 2020 (the energy-based pointing game).
  Gu, Yang and Tresp (2020), section 4.2 and Table 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 15
TIES = ("centroid", "random", "first")
# Pointing accuracies (%) on PASCAL VOC07 test, all images, from TorchRay's benchmark table
# (docs/pointing.csv of facebookresearch/TorchRay): VGG16 and ResNet50 fine-tuned on VOC07.
PUBLISHED = {
    "torchray_vgg16": {"centre": 69.6, "gradient": 76.3, "deconvnet": 67.5,
                       "guided_backprop": 75.9, "excitation_backprop": 77.1,
                       "contrastive_excitation_backprop": 79.9, "rise": 86.9, "gradcam": 86.6,
                       "extremal_perturbation": 88.0},
    "torchray_resnet50": {"centre": 69.6, "gradient": 72.3, "deconvnet": 68.6,
                          "guided_backprop": 77.2, "excitation_backprop": 84.5,
                          "contrastive_excitation_backprop": 90.7, "rise": 86.4, "gradcam": 90.4,
                          "extremal_perturbation": 88.9},
    # Gu et al. (2020) Table 3, printed without a model: its baselines are TorchRay's ResNet50
    # column (Guided 77.9 and MWP 84.4 printed where TorchRay has 77.2 and 84.5); "our" (85.3)
    # is their method with the ResNet34 of their section 4.1, another model.
    "gu2020_table3": {"centre": 69.6, "gradient": 72.3, "deconvnet": 68.6,
                      "guided_backprop": 77.9, "excitation_backprop": 84.4,
                      "contrastive_excitation_backprop": 90.7, "rise": 86.4, "gradcam": 90.4,
                      "extremal_perturbation": 88.9, "dssr_plus_resnet34": 85.3},
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
    return [b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])] for b in boxes]  # drop empty padding


def tied_maxima(maps, *, atol: float = 0.0) -> np.ndarray:
    """Boolean (N, H, W): the pixels within `atol` of their map's maximum."""
    maps = _maps2d(maps)
    top = maps.reshape(len(maps), -1).max(axis=1)
    return maps >= (top - atol)[:, None, None]


def tie_counts(maps, *, atol: float = 0.0) -> np.ndarray:
    """How many pixels share each map's maximum (within `atol`), (N,) ints."""
    return tied_maxima(maps, atol=atol).reshape(len(_maps2d(maps)), -1).sum(axis=1)


def peaks(maps, *, ties: str = "centroid", seed=None, atol: float = 0.0):
    """Row and column of each map's peak under a tie rule (module docstring), (N,) floats each.

    Args:
      maps: (N, H, W) or (N, H, W, 1).
      ties: "centroid", "random" or "first".
      seed: the random rule's seed (an int or a tuple of ints; required for "random").
      atol: pixels within `atol` of the maximum count as tied.

    Returns:
      (rows, cols): float arrays; fractional only for "centroid" over several maxima.
    """
    if ties not in TIES:
        raise ValueError(f'unknown tie rule "{ties}"; use one of {", ".join(TIES)}')
    maps = _maps2d(maps)
    n, h, w = maps.shape
    if ties == "first":
        rows, cols = np.unravel_index(maps.reshape(n, -1).argmax(axis=1), (h, w))
        return rows.astype(np.float64), cols.astype(np.float64)
    tied = tied_maxima(maps, atol=atol)
    if ties == "centroid":
        yy, xx = np.mgrid[:h, :w]
        count = tied.sum(axis=(1, 2))
        return (tied * yy).sum(axis=(1, 2)) / count, (tied * xx).sum(axis=(1, 2)) / count
    if seed is None:
        raise ValueError('ties="random" needs seed=... (an int or a tuple of ints)')
    rng = np.random.default_rng(seed)
    flat = [rng.choice(np.flatnonzero(t)) for t in tied.reshape(n, -1)]
    rows, cols = np.unravel_index(np.asarray(flat, np.int64), (h, w))
    return rows.astype(np.float64), cols.astype(np.float64)


def distance_to_boxes(py, px, boxes: np.ndarray) -> float:
    """Distance from the point (py, px) to the nearest of `boxes` (K, 4); inf if K = 0."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.inf
    dy = np.maximum(np.maximum(boxes[:, 0] - py, py - (boxes[:, 2] - 1)), 0)
    dx = np.maximum(np.maximum(boxes[:, 1] - px, px - (boxes[:, 3] - 1)), 0)
    return float(np.hypot(dy, dx).min())


def hits_at(rows, cols, boxes, *, tolerance: float = TOLERANCE) -> np.ndarray:
    """Are the points (rows[i], cols[i]) within `tolerance` pixels of boxes[i]? (N,) bool."""
    box_sets = _box_lists(boxes, len(rows))
    return np.array([distance_to_boxes(y, x, b) <= tolerance
                     for y, x, b in zip(rows, cols, box_sets)], bool)  # fmt: skip


def pointing_hits(maps, boxes, *, tolerance: float = TOLERANCE, ties: str = "centroid",
                  seed=None, atol: float = 0.0) -> np.ndarray:  # fmt: skip
    """Is each map's peak within `tolerance` pixels of one of its boxes? (N,) bool.

    Args:
      maps: (N, H, W) or (N, H, W, 1) saliency maps.
      boxes: (N, 4), or a sequence of (K_i, 4) arrays (every box of the explained
        class in image i; a hit near any counts; empty boxes are ignored).
      tolerance: pixels (15 in the pointing game at VOC's 224 px).
      ties: the tie rule, "centroid" (default), "random" or "first" (module docstring).
      seed: seed of the "random" rule.
      atol: pixels within `atol` of the maximum count as tied.

    Returns:
      Boolean hits, (N,).
    """
    rows, cols = peaks(maps, ties=ties, seed=seed, atol=atol)
    return hits_at(rows, cols, boxes, tolerance=tolerance)


def centre_maps(n: int, shape: tuple[int, int]) -> np.ndarray:
    """The centre baseline: maps falling off with the distance to the image centre, (N, H, W).

    The peak is the centre pixel (the four central pixels, tied, for an even size:
    their centroid is the exact centre).
    """
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


def normalise_maps(maps) -> np.ndarray:
    """Per-map min-max normalisation to [0, 1] (Gu et al. section 4.1); a constant map is 0."""
    maps = _maps2d(maps).astype(np.float64)
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (maps - lo) / np.where(span > 0, span, 1.0), 0.0)


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


def energy_in_boxes(maps, boxes) -> np.ndarray:
    """Share of each min-max normalised map's mass inside its boxes, (N,) (0 for a constant map).

    A map's offset does not count, only its shape: `mass_in_boxes(normalise_maps(maps), boxes)`.
    """
    return mass_in_boxes(normalise_maps(maps), boxes)


def class_discrimination(maps, own_boxes, other_boxes, *, tolerance: float = 0.0,
                         ties: str = "centroid", seed=None) -> dict[str, np.ndarray]:  # fmt: skip
    """How well maps for class A avoid the boxes of another class B in the same image.

    Args:
      maps: (N, H, W) maps, each explaining the class of `own_boxes`.
      own_boxes: (N, 4) or per-image (K, 4) boxes of the explained class.
      other_boxes: the same for the other class.
      tolerance: pixels around a box that still count as in it (0: inside).
      ties: the tie rule of the peak (one peak per map for both tests).
      seed: seed of the "random" rule.

    Returns:
      Per map (N,): "own_mass" and "other_mass" (energy in each class's boxes,
      `energy_in_boxes`), "discrimination" (own / (own + other), 0.5 when
      neither holds mass), "peak_in_own" and "peak_in_other".
    """
    own, other = energy_in_boxes(maps, own_boxes), energy_in_boxes(maps, other_boxes)
    both = own + other
    disc = np.where(both > 0, own / np.where(both > 0, both, 1.0), 0.5)
    rows, cols = peaks(maps, ties=ties, seed=seed)
    return {
        "own_mass": own,
        "other_mass": other,
        "discrimination": disc,
        "peak_in_own": hits_at(rows, cols, own_boxes, tolerance=tolerance),
        "peak_in_other": hits_at(rows, cols, other_boxes, tolerance=tolerance),
    }


def scaled_tolerance(size: int, *, tolerance: float = TOLERANCE, base: int = 224) -> float:
    """The pointing tolerance given for `base`-pixel images, scaled to `size` pixels."""
    return tolerance * size / base


def boxes_of_class(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], cls) -> list:
    """Per image, the boxes (K, 4) whose label is `cls` (a class per image or one for all)."""
    cls = np.broadcast_to(np.asarray(cls), (len(boxes),))
    return [np.asarray(b).reshape(-1, 4)[np.asarray(lab) == k]
            for b, lab, k in zip(boxes, labels, cls)]  # fmt: skip
