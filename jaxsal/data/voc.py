"""PASCAL VOC 2007 through tensorflow-datasets, as images and per-class boxes for the pointing game.

Reads `voc/2007` with `tfds.data_source` (no TensorFlow needed; the data must
already be prepared in `data_dir`, e.g. by `tfds build voc/2007` on a machine
with network). Each example becomes an image resized to `size x size`,
normalised with the ImageNet mean and standard deviation (torchvision's
models), and its objects' boxes in pixels of the resized image, half-open
`(y0, x0, y1, x1)`, with their labels (20 classes, `CLASSES`) and difficult
flags. Tests use `tfds.testing.mock_data` (random images and objects).

References:
  Everingham et al. The PASCAL Visual Object Classes (VOC) challenge. IJCV 2010.
  Zhang et al. (2016): the pointing game on VOC07 test, 4,952 images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.preprocess import IMAGENET_MEAN as _MEAN
from jaxsal.preprocess import IMAGENET_STD as _STD

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
IMAGENET_MEAN = np.array(_MEAN, np.float32)
IMAGENET_STD = np.array(_STD, np.float32)


@dataclasses.dataclass(frozen=True)
class VocExample:
    """One VOC image ready for a model and the pointing game.

    Attributes:
      image: (size, size, 3) float32, ImageNet-normalised.
      boxes: (K, 4) int32 half-open pixel boxes in the resized image.
      labels: (K,) int32 classes in 0..19.
      difficult: (K,) bool.
      original_size: (H, W) of the image before resizing.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    original_size: tuple[int, int]

    def classes(self, *, skip_difficult: bool = False) -> np.ndarray:
        """The classes present (sorted), optionally only those with a non-difficult object."""
        keep = ~self.difficult if skip_difficult else np.ones(len(self.labels), bool)
        return np.unique(self.labels[keep])

    def boxes_of(self, cls: int, *, skip_difficult: bool = False) -> np.ndarray:
        """Every box of class `cls`, (K, 4)."""
        keep = self.labels == cls
        if skip_difficult:
            keep &= ~self.difficult
        return self.boxes[keep]


def source(split: str = "test", *, data_dir: str | None = None, name: str = "voc/2007"):
    """The tfds random-access data source (`len`, indexing) of a VOC split."""
    import tensorflow_datasets as tfds

    return tfds.data_source(name, split=split, data_dir=data_dir)


def pixel_boxes(bbox: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """tfds boxes (K, 4) normalised (ymin, xmin, ymax, xmax) to half-open pixel boxes.

    Coordinates are ordered (min, max) and clipped to the image; every box
    keeps at least one pixel.
    """
    h, w = size
    b = np.asarray(bbox, np.float64).reshape(-1, 4)
    y0, y1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    x0, x1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    y0 = np.clip(np.floor(y0 * h), 0, h - 1)
    x0 = np.clip(np.floor(x0 * w), 0, w - 1)
    y1 = np.clip(np.maximum(np.ceil(y1 * h), y0 + 1), 1, h)
    x1 = np.clip(np.maximum(np.ceil(x1 * w), x0 + 1), 1, w)
    return np.stack([y0, x0, y1, x1], axis=1).astype(np.int32)


def normalise(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) to a bilinear (antialiased) `size x size` ImageNet-normalised float32."""
    img = jnp.asarray(image, jnp.float32) / 255.0
    img = jax.image.resize(img, (size, size, img.shape[-1]), "linear", antialias=True)
    return ((np.asarray(img) - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def to_example(record: dict, size: int = 224) -> VocExample:
    """A tfds VOC record to a `VocExample` (objects' fields zipped to their shortest length)."""
    image = np.asarray(record["image"])
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    obj = record["objects"]
    k = min(len(obj["bbox"]), len(obj["label"]), len(obj.get("is_difficult", obj["label"])))
    difficult = np.asarray(obj.get("is_difficult", np.zeros(k)), bool)[:k]
    labels = np.asarray(obj["label"], np.int32)[:k]
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"VOC labels must be in 0..19, got {labels.min()}..{labels.max()}")
    return VocExample(
        image=normalise(image, size),
        boxes=pixel_boxes(np.asarray(obj["bbox"])[:k], (size, size)),
        labels=labels,
        difficult=difficult,
        original_size=(int(image.shape[0]), int(image.shape[1])),
    )


def examples(
    data, *, indices: Sequence[int] | None = None, size: int = 224
) -> Iterator[VocExample]:
    """`VocExample`s of a data source (or any sequence of records), in `indices` order."""
    indices = range(len(data)) if indices is None else indices
    for i in indices:
        yield to_example(data[int(i)], size)


def explanation_targets(exs: Sequence[VocExample], *, skip_difficult: bool = False):
    """Flattens images into (image index, class, boxes of the class) for every class present."""
    return [(i, int(c), ex.boxes_of(c, skip_difficult=skip_difficult))
            for i, ex in enumerate(exs) for c in ex.classes(skip_difficult=skip_difficult)]  # fmt: skip
