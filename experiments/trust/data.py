"""The study's data: training batches as a pure function of the step, evaluation batches.

Two sources behind one interface (`make_data`):
- `EmbeddedData`: version-2 scenes (`jaxsal.data.photo_scenes`: MNIST digits
  on photographs, with their boxes), a fixed training set of the heads,
  validation (tuning) and test (the reported figures) scenes;
- `TfdsData`: a TFDS image classification set (cats vs dogs in the paper)
  through `jaxsal.data.tfds_images`, read batch by batch (no boxes).

Batches are dicts {"image", "label"} (+ "box" for the scenes). `train_batch`
is deterministic in (step, seed), so a resumed training sees the very
batches an uninterrupted one would; the last incomplete batch of an epoch is
dropped (fixed shapes).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from experiments.trust.config import DataConfig
from jaxsal.data import photo_scenes, tfds_images
from jaxsal.data.tfds_images import batch_indices

SPLITS = ("train", "validation", "test")


class StudyData:
    """Training and evaluation batches of a `DataConfig` (see `make_data`)."""

    config: DataConfig
    num_classes: int
    has_boxes: bool

    def size(self, split: str) -> int:
        """Images in a split."""
        raise NotImplementedError

    def train_batch(self, step: int, *, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Training batch `step` (epoch `step // steps_per_epoch`, shuffled with (seed, epoch))."""
        raise NotImplementedError

    def batches(self, split: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """The split in order, batch by batch (the last one may be smaller)."""
        raise NotImplementedError

    def display(self, images: np.ndarray) -> np.ndarray:
        """Images as [0, 1] pixels for figures."""
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        n = self.size("train")
        if n < batch_size:
            raise ValueError(f"{n} training images give no batch of {batch_size}")
        return n // batch_size


class EmbeddedData(StudyData):
    """Version-2 scenes; every split fixed by `config.seed`."""

    has_boxes = True
    num_classes = 10

    def __init__(self, config: DataConfig):
        self.config = config
        self.sizes = {"train": config.n_train, "validation": config.n_val, "test": config.n_test}

    @functools.lru_cache(maxsize=3)  # noqa: B019 - one data object per study
    def split(self, name: str) -> dict[str, np.ndarray]:
        """{"image", "label", "box"} of a whole split."""
        if name not in SPLITS:
            raise ValueError(f'unknown split "{name}"; use one of {SPLITS}')
        s = photo_scenes(name, size=self.config.size, seed=self.config.seed, n=self.sizes[name])
        return {"image": s.images, "label": s.labels, "box": s.boxes}

    def size(self, split: str) -> int:
        return self.sizes[split]

    def train_batch(self, step, *, batch_size, seed):
        idx = batch_indices(self.size("train"), step, batch_size=batch_size, seed=seed)
        return {k: v[idx] for k, v in self.split("train").items()}

    def batches(self, split, batch_size):
        data = self.split(split)
        for start in range(0, self.size(split), batch_size):
            yield {k: v[start : start + batch_size] for k, v in data.items()}

    def display(self, images):
        from jaxsal.data import PHOTO_MEAN, PHOTO_STD

        return np.clip(np.asarray(images)[..., 0] * PHOTO_STD + PHOTO_MEAN, 0.0, 1.0)


class TfdsData(StudyData):
    """A TFDS image classification set, read record by record (`tfds.data_source`)."""

    has_boxes = False

    def __init__(self, config: DataConfig):
        self.config = config
        self.num_classes = config.num_classes
        self.splits = {"train": (config.train_split, config.num_train),
                       "validation": (config.val_split, config.num_val),
                       "test": (config.test_split, config.num_test)}  # fmt: skip

    @functools.lru_cache(maxsize=3)  # noqa: B019 - one data object per study
    def source(self, split: str):
        return tfds_images.source(self.config.name, self.splits[split][0],
                                  data_dir=self.config.data_dir)  # fmt: skip

    def size(self, split):
        n = self.splits[split][1]
        return len(self.source(split)) if n is None else min(n, len(self.source(split)))

    def train_batch(self, step, *, batch_size, seed):
        return tfds_images.batch_at(self.source("train"), step, batch_size=batch_size, seed=seed,
                                    image_size=self.config.image_size,
                                    num_records=self.size("train"), workers=4)  # fmt: skip

    def batches(self, split, batch_size):
        c = self.config
        return tfds_images.batches(c.name, self.splits[split][0], batch_size=batch_size,
                                   data_dir=c.data_dir, image_size=c.image_size, shuffle=False,
                                   num_records=self.size(split))  # fmt: skip

    def display(self, images):
        mean, std = np.asarray(tfds_images.IMAGENET_MEAN), np.asarray(tfds_images.IMAGENET_STD)
        return np.clip(np.asarray(images) * std + mean, 0.0, 1.0)


def make_data(config: DataConfig) -> StudyData:
    """The data of `config.source` ("embedded" or "tfds")."""
    if config.source == "embedded":
        return EmbeddedData(config)
    if config.source == "tfds":
        return TfdsData(config)
    raise ValueError(f'unknown data source "{config.source}"; use "embedded" or "tfds"')
