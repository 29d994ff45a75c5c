"""Data of the fooling study: training batches as a pure function of the step, test sets.

Two sources behind one interface (`FoolingData`):
- `EmbeddedData`: the embedded digit scenes (`jaxsal.data.digit_scenes`, with
  pixel noise so that backgrounds have live activations) and two-digit
  composites for active fooling (`composite_scenes`).
- `TfdsData`: a TFDS image classification set through
  `jaxsal.data.tfds_images` (ImageNet for the paper), with the paper's
  2x2-grid composites of two classes for active fooling.

`train_batch(step, ...)` is deterministic in `step`, so a resumed fine-tuning
sees the very batches an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxsal.data import composite_scenes, digit_scenes, tfds_images
from jaxsal.data.tfds_images import batch_indices


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the study's images come from.

    Attributes:
      source: "embedded" (digit scenes) or "tfds".
      name: TFDS name (source "tfds"), e.g. "imagenet2012".
      train_split: TFDS split fine-tuned on.
      test_split: TFDS split evaluated on (its first `n_test` records).
      data_dir: TFDS data directory.
      image_size: TFDS crop size (224 in the paper).
      num_records: use only the first records of the training split (None: all).
      size: canvas side of the digit scenes.
      noise: pixel noise of the digit scenes (blank backgrounds give dead
        target-layer activations, where no fooling gradient flows).
      n_train: digit scenes fine-tuned on.
      n_test: test images (FSR, accuracy).
      classes: (c1, c2) of active fooling.
      n_fool_train: training composites (paper: 1,100).
      n_fool_test: held-out composites (paper: 200).
      seed: seed of the scenes, composites and batch order.
    """

    source: str = "embedded"
    name: str = "imagenet2012"
    train_split: str = "train"
    test_split: str = "validation"
    data_dir: str | None = None
    image_size: int = 224
    num_records: int | None = None
    size: int = 96
    noise: float = 0.1
    n_train: int = 4000
    n_test: int = 200
    classes: tuple[int, int] = (3, 8)
    n_fool_train: int = 1100
    n_fool_test: int = 200
    seed: int = 0


class FoolingData:
    """Training batches and test sets of a `DataConfig` (see `make_data`)."""

    config: DataConfig

    def train_batch(self, step: int, *, batch_size: int, fool_batch: int = 0) -> dict:
        """Batch `step`: {"image", "label", "index"} (+ "fool_image" when fool_batch > 0)."""
        n = self._num_train()
        idx = batch_indices(n, step, batch_size=batch_size, seed=self.config.seed)
        batch = self._train_records(idx, step, batch_size)
        batch["index"] = np.full((batch_size,), step, np.int32)  # SmoothGrad's noise key
        if fool_batch:
            fool = self.fool_train()
            j = batch_indices(len(fool), step, batch_size=fool_batch, seed=self.config.seed + 1)
            batch["fool_image"] = fool[j]
        return batch

    def test(self) -> dict[str, np.ndarray]:
        """{"image", "label"}: the test images."""
        raise NotImplementedError

    def fool_train(self) -> np.ndarray:
        """Training composites of the two active-fooling classes (N, H, W, C)."""
        raise NotImplementedError

    def fool_test(self) -> np.ndarray:
        """Held-out composites (N, H, W, C)."""
        raise NotImplementedError

    def display(self, images: np.ndarray) -> np.ndarray:
        """Images as [0, 1] pixels for figures, (N, H, W) or (N, H, W, 3)."""
        raise NotImplementedError

    def _num_train(self) -> int:
        raise NotImplementedError

    def _train_records(self, idx, step, batch_size) -> dict:
        raise NotImplementedError


class EmbeddedData(FoolingData):
    """Digit scenes with pixel noise (see `DataConfig`)."""

    def __init__(self, config: DataConfig):
        self.config = config
        c = config
        self._train = digit_scenes("train", size=c.size, n=c.n_train, seed=(c.seed, 99),
                                   noise=c.noise)  # fmt: skip
        self._test = digit_scenes("test", size=c.size, n=c.n_test, seed=c.seed, noise=c.noise)
        self._fool = {}

    def _num_train(self):
        return len(self._train)

    def _train_records(self, idx, step, batch_size):
        return {"image": self._train.images[idx], "label": self._train.labels[idx]}

    def test(self):
        return {"image": self._test.images, "label": self._test.labels}

    def _composites(self, split, n):
        if split not in self._fool:
            c = self.config
            self._fool[split] = composite_scenes(split, classes=c.classes, size=c.size, n=n,
                                                 seed=c.seed, noise=c.noise).images  # fmt: skip
        return self._fool[split]

    def fool_train(self):
        return self._composites("train", self.config.n_fool_train)

    def fool_test(self):
        return self._composites("test", self.config.n_fool_test)

    def display(self, images):
        from jaxsal.data import MEAN, STD

        return np.clip(np.asarray(images)[..., 0] * STD + MEAN, 0.0, 1.0)


class TfdsData(FoolingData):
    """A TFDS classification set, preprocessed like torchvision's eval transform."""

    def __init__(self, config: DataConfig, *, cache_dir: str | Path | None = None):
        self.config = config
        self._cache = None if cache_dir is None else Path(cache_dir)
        self._train_src = tfds_images.source(config.name, config.train_split,
                                             data_dir=config.data_dir)  # fmt: skip
        self._test_src = tfds_images.source(config.name, config.test_split,
                                            data_dir=config.data_dir)  # fmt: skip
        self._test = None
        self._fool = {}

    def _num_train(self):
        n = len(self._train_src)
        return n if self.config.num_records is None else min(n, self.config.num_records)

    def _train_records(self, idx, step, batch_size):
        return tfds_images._load(self._train_src, idx, self.config.image_size, None)

    def test(self):
        if self._test is None:
            n = min(self.config.n_test, len(self._test_src))
            self._test = tfds_images._load(
                self._test_src, np.arange(n), self.config.image_size, None
            )
        return self._test

    def _composites(self, which, src, n):
        if which in self._fool:
            return self._fool[which]
        c = self.config
        path = None
        if self._cache is not None:
            tag = f"{c.name}-{c.train_split if which == 'train' else c.test_split}"
            path = (
                self._cache
                / f"composites-{tag}-{c.classes[0]}-{c.classes[1]}-{n}-{c.image_size}-{c.seed}.npy"
            )
            if path.exists():
                self._fool[which] = np.load(path)
                return self._fool[which]
        images = tfds_images.composites(src, classes=c.classes, n=n, seed=c.seed,
                                        image_size=c.image_size)["image"]  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, images)
        self._fool[which] = images
        return images

    def fool_train(self):
        return self._composites("train", self._train_src, self.config.n_fool_train)

    def fool_test(self):
        return self._composites("test", self._test_src, self.config.n_fool_test)

    def display(self, images):
        mean = np.asarray(tfds_images.IMAGENET_MEAN).reshape(1, 1, 1, 3)
        std = np.asarray(tfds_images.IMAGENET_STD).reshape(1, 1, 1, 3)
        return np.clip(np.asarray(images) * std + mean, 0.0, 1.0)


def make_data(config: DataConfig, *, cache_dir: str | Path | None = None) -> FoolingData:
    """The `FoolingData` of a configuration."""
    if config.source == "embedded":
        return EmbeddedData(config)
    if config.source == "tfds":
        return TfdsData(config, cache_dir=cache_dir)
    raise ValueError(f'unknown data source "{config.source}"; use "embedded" or "tfds"')
