"""tensorflow-datasets image classification without TensorFlow: eval transform, batches, composites.

Records come from `tfds.data_source` (random access to ArrayRecord files; no
TensorFlow needed, unlike `tfds.load`). Every image goes through torchvision's
evaluation transform, the one Heo et al. (2019) use: resize the shorter side to
256 (for a 224 crop; proportionally otherwise) with bilinear interpolation,
centre crop, scale to [0, 1], normalise with the ImageNet mean and standard
deviation. Images are NHWC float32.

A batch is a pure function of (seed, step): `batch_at` computes it from the
step number alone (epoch `step // steps_per_epoch` is shuffled with the seed
`(seed, epoch)`), so a resumed run sees exactly the batches it would have seen.

`composites` builds the active-fooling set of the paper: four images of two
classes (at least one of each) tiled at random positions in a 2x2 grid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from jaxsal.preprocess import IMAGENET_MEAN, IMAGENET_STD

TRAIN_COMPOSITES = 1100
HELD_OUT_COMPOSITES = 200


def source(name: str, split: str, *, data_dir: str | None = None) -> Sequence[dict[str, Any]]:
    """Random-access records of a TFDS data set (ArrayRecord format), no TensorFlow needed.

    Args:
      name: TFDS name, e.g. "imagenet2012" or "cats_vs_dogs".
      split: split name, e.g. "train", "validation", "train[:90%]".
      data_dir: TFDS data directory (default: TFDS's own, ~/tensorflow_datasets).

    Returns:
      A sequence of dicts with at least "image" (H, W, 3) uint8 and "label".
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as err:  # tfds raises many types; all mean "not prepared here"
        raise RuntimeError(
            f"cannot open TFDS data set {name!r} split {split!r} in data_dir={data_dir!r}: "
            f"{err}. Prepare it in ArrayRecord format first, e.g. "
            f"`tfds build {name} --file_format=array_record --data_dir=DIR` "
            "(imagenet2012 needs its tar files in DIR/downloads/manual)."
        ) from err


def resize_size(image_size: int) -> int:
    """Shorter-side length before the centre crop: 256 for 224, proportionally otherwise."""
    return int(round(image_size * 256 / 224))


def preprocess(image: np.ndarray, *, image_size: int = 224) -> np.ndarray:
    """torchvision's eval transform: Resize(256), CenterCrop(224), ToTensor, Normalize; NHWC.

    Args:
      image: (H, W, 3) or (H, W, 1) or (H, W) uint8 RGB image.
      image_size: side of the square crop (the shorter side is resized to
        `round(image_size * 256 / 224)` first).

    Returns:
      (image_size, image_size, 3) float32, normalised with the ImageNet mean and std.

    References:
      torchvision.transforms (Resize with bilinear PIL interpolation, CenterCrop),
      as in the evaluation code of Heo et al. (NeurIPS 2019).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    pil = Image.fromarray(image.astype(np.uint8))
    w, h = pil.size
    short, long = (w, h) if w <= h else (h, w)
    new_short = resize_size(image_size)
    new_long = int(new_short * long / short)  # torchvision truncates the longer side
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        pil = pil.resize((new_w, new_h), Image.BILINEAR)
    if new_h < image_size or new_w < image_size:
        raise ValueError(f"resized image {new_h}x{new_w} is smaller than the crop {image_size}")
    top = int(round((new_h - image_size) / 2.0))
    left = int(round((new_w - image_size) / 2.0))
    crop = np.asarray(pil, np.float32)[top : top + image_size, left : left + image_size]
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 1, 3)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 1, 3)
    return ((crop / np.float32(255.0) - mean) / std).astype(np.float32)


def steps_per_epoch(num_records: int, batch_size: int, *, drop_remainder: bool) -> int:
    """Number of batches in one pass over `num_records` records."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if drop_remainder and num_records < batch_size:
        raise ValueError(
            f"{num_records} records give no full batch of {batch_size}; "
            "lower batch_size or pass drop_remainder=False"
        )
    return num_records // batch_size if drop_remainder else -(-num_records // batch_size)


def batch_indices(
    num_records: int,
    step: int,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool | None = None,
) -> np.ndarray:
    """Record indices of batch `step` (counted over all epochs): a pure function of (seed, step).

    Args:
      num_records: records in the data set (or the subset used).
      step: global batch number, epoch `step // steps_per_epoch`.
      batch_size: records per batch.
      shuffle: shuffle each epoch with `numpy.random.default_rng((seed, epoch))`.
      seed: shuffling seed.
      drop_remainder: drop the last, smaller batch of each epoch (default: `shuffle`,
        i.e. fixed shapes for training, every record for evaluation).

    Returns:
      (batch_size,) int64 indices (fewer for the last batch when not dropping).
    """
    drop = shuffle if drop_remainder is None else drop_remainder
    per_epoch = steps_per_epoch(num_records, batch_size, drop_remainder=drop)
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    epoch, within = divmod(int(step), per_epoch)
    if shuffle:
        order = np.random.default_rng((int(seed), epoch)).permutation(num_records)
    else:
        order = np.arange(num_records)
    return order[within * batch_size : (within + 1) * batch_size]


def _load(src: Sequence[dict[str, Any]], indices: np.ndarray, image_size: int, pool) -> dict:
    def one(i):
        record = src[int(i)]
        return preprocess(record["image"], image_size=image_size), int(record["label"])

    rows = list(pool.map(one, indices)) if pool is not None else [one(i) for i in indices]
    return {
        "image": np.stack([r[0] for r in rows]),
        "label": np.asarray([r[1] for r in rows], np.int32),
    }


def load(
    src: Sequence[dict[str, Any]], indices, *, image_size: int = 224, workers: int = 0
) -> dict[str, np.ndarray]:
    """Records `indices` of `src`, preprocessed: {"image": (B, S, S, 3) float32, "label": int32}."""
    if workers:
        with ThreadPoolExecutor(workers) as pool:
            return _load(src, np.asarray(indices), image_size, pool)
    return _load(src, np.asarray(indices), image_size, None)


def batch_at(
    src: Sequence[dict[str, Any]],
    step: int,
    *,
    batch_size: int,
    image_size: int = 224,
    shuffle: bool = True,
    seed: int = 0,
    num_records: int | None = None,
    drop_remainder: bool | None = None,
    workers: int = 0,
) -> dict[str, np.ndarray]:
    """Batch number `step` of a record source, preprocessed: a pure function of (seed, step).

    Args:
      src: random-access records (from `source`, or any sequence of dicts with "image"
        uint8 (H, W, 3) and "label").
      step: global batch number (over all epochs).
      batch_size: images per batch.
      image_size: side of the square crop.
      shuffle: reshuffle each epoch (seeded by (seed, epoch)).
      seed: shuffling seed.
      num_records: use only the first `num_records` records (default: all).
      drop_remainder: see `batch_indices` (default: `shuffle`).
      workers: threads decoding and resizing (0: in the calling thread).

    Returns:
      {"image": (B, image_size, image_size, 3) float32, "label": (B,) int32}.
    """
    n = _num_records(src, num_records)
    idx = batch_indices(
        n, step, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder
    )
    return load(src, idx, image_size=image_size, workers=workers)


def _num_records(src: Sequence, num_records: int | None) -> int:
    if num_records is None:
        return len(src)
    if not 0 < num_records <= len(src):
        raise ValueError(
            f"num_records must be in 1..{len(src)} (the split's size), got {num_records}"
        )
    return int(num_records)


def batches(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: str | None = None,
    image_size: int = 224,
    shuffle: bool = True,
    seed: int = 0,
    num_records: int | None = None,
    epochs: int | None = 1,
    start_step: int = 0,
    drop_remainder: bool | None = None,
    workers: int = 8,
) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed batches of a TFDS image classification split, from `start_step` on.

    Batch `k` equals `batch_at(source(name, split), k, ...)`, so a run resumed at
    `start_step` continues with the very batches an uninterrupted run would see.
    The next batch is prepared in the background while the current one is used.

    Args:
      name: TFDS name ("imagenet2012", "cats_vs_dogs", ...); needs "image" and "label".
      split: split name ("train", "validation", "train[:1000]", ...).
      batch_size: images per batch.
      data_dir: TFDS data directory.
      image_size: side of the square crop (224 in the paper).
      shuffle: reshuffle each epoch with the seed (seed, epoch).
      seed: shuffling seed.
      num_records: use only the first `num_records` records.
      epochs: passes over the data; None repeats forever.
      start_step: first global batch number to yield.
      drop_remainder: drop each epoch's last smaller batch (default: `shuffle`).
      workers: threads decoding and resizing images.

    Returns:
      An iterator of {"image": (B, S, S, 3) float32, "label": (B,) int32} NumPy dicts.
    """
    src = source(name, split, data_dir=data_dir)
    n = _num_records(src, num_records)
    drop = shuffle if drop_remainder is None else drop_remainder
    per_epoch = steps_per_epoch(n, batch_size, drop_remainder=drop)
    stop = None if epochs is None else epochs * per_epoch
    kw = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop)
    with ThreadPoolExecutor(max(workers, 1)) as pool, ThreadPoolExecutor(1) as ahead:

        def fetch(step):
            return _load(src, batch_indices(n, step, **kw), image_size, pool)

        step = start_step
        pending = ahead.submit(fetch, step) if stop is None or step < stop else None
        while pending is not None:
            batch = pending.result()
            step += 1
            pending = ahead.submit(fetch, step) if stop is None or step < stop else None
            yield batch


def labels_of(src: Sequence[dict[str, Any]], *, num_records: int | None = None) -> np.ndarray:
    """Labels of the first `num_records` records (reads every record: slow on big splits)."""
    n = _num_records(src, num_records)
    return np.asarray([int(src[i]["label"]) for i in range(n)], np.int64)


def composites(
    src: Sequence[dict[str, Any]],
    *,
    classes: tuple[int, int] = (386, 555),
    n: int = TRAIN_COMPOSITES,
    seed: int = 0,
    image_size: int = 224,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The active-fooling set: 2x2 grids of four images of two classes, at least one of each.

    Each composite draws how many of its four cells hold class `c1` (1, 2 or 3; the
    rest hold `c2`), shuffles the cells, and fills each with a different random image
    of its class, passed through the eval transform at `image_size // 2`.

    Args:
      src: random-access records with "image" and "label" (e.g. `source(...)`); use
        the training split for the 1,100 training and a held-out split for the 200
        held-out composites.
      classes: (c1, c2), two different class ids (paper: African elephant 386, fire
        engine 555).
      n: number of composites (paper: 1,100 training, 200 held-out).
      seed: seed of the image and position draws.
      image_size: side of the composite (even); each tile is `image_size // 2`.
      labels: labels of all records of `src` if known (skips reading every record).

    Returns:
      {"image": (n, S, S, 3) float32, "label": (n, 2) int32 = (c1, c2),
      "cells": (n, 4) int32, the class of each cell in row-major order}.

    References:
      Heo et al., Fooling neural network interpretations via adversarial model
      manipulation (NeurIPS 2019), active fooling.
    """
    c1, c2 = (int(c) for c in classes)
    if c1 == c2:
        raise ValueError(f"classes must be two different class ids, got {tuple(classes)}")
    if image_size % 2:
        raise ValueError(f"image_size must be even (two tiles per side), got {image_size}")
    labels = labels_of(src) if labels is None else np.asarray(labels)
    pools = [np.flatnonzero(labels == c) for c in (c1, c2)]
    for c, pool in zip((c1, c2), pools, strict=True):
        if len(pool) < 3:
            raise ValueError(
                f"class {c} has {len(pool)} records in the source; a composite needs up to 3 "
                "images of a class: use a bigger split or other classes"
            )
    rng = np.random.default_rng((int(seed), c1, c2))
    half = image_size // 2
    images = np.empty((n, image_size, image_size, 3), np.float32)
    cells = np.empty((n, 4), np.int32)
    for i in range(n):
        k = int(rng.integers(1, 4))
        which = rng.permutation(np.asarray([0] * k + [1] * (4 - k)))
        picks = [rng.choice(pools[0], k, replace=False), rng.choice(pools[1], 4 - k, replace=False)]
        taken = [0, 0]
        for cell, cls in enumerate(which):
            record = src[int(picks[cls][taken[cls]])]
            taken[cls] += 1
            r, c = divmod(cell, 2)
            tile = preprocess(record["image"], image_size=half)
            images[i, r * half : (r + 1) * half, c * half : (c + 1) * half] = tile
            cells[i, cell] = (c1, c2)[cls]
    label = np.tile(np.asarray([[c1, c2]], np.int32), (n, 1))
    return {"image": images, "label": label, "cells": cells}
