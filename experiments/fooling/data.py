"""The fooling study's data: training batches as a pure function of the step, evaluation sets.

Two sources behind one interface (`FoolingData`):
- `EmbeddedData`: the embedded digit scenes, version 2 (digits on
  photographs: `jaxsal.data.photo_scenes` / `photo_composites`, the default)
  or version 1 (blank canvases with pixel noise: `digit_scenes` /
  `composite_scenes`);
- `TfdsData`: a TFDS image classification set through
  `jaxsal.data.tfds_images` (ImageNet for the paper), with the paper's 2x2
  composites of two classes for active fooling.

Splits: "train" (fine-tuning), "validation" (every choice: calibration,
the class pair, tuning) and "test" (the reported figures, touched once).
Evaluation sets are dicts {"image", "label", "box"}; composites are
{"image", "boxes_c1", "boxes_c2"} with the boxes of each class's objects
(padded with empty boxes). `train_batch(step, ...)` is deterministic in the
step, so a resumed fine-tuning sees the very batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from experiments.fooling.config import DataConfig
from jaxsal.data import MEAN as BLANK_MEAN
from jaxsal.data import (
    PHOTO_MEAN,
    PHOTO_STD,
    composite_scenes,
    digit_scenes,
    photo_composites,
    photo_scenes,
    tfds_images,
)
from jaxsal.data import STD as BLANK_STD
from jaxsal.data.tfds_images import batch_indices, steps_per_epoch

SPLITS = ("train", "validation", "test")


def _boxes_of(labels: np.ndarray, boxes: np.ndarray, cls: int, slots: int) -> np.ndarray:
    """(N, slots, 4): the boxes whose label is `cls`, padded with empty boxes."""
    out = np.zeros((len(labels), slots, 4), np.int32)
    for i in range(len(labels)):
        own = boxes[i][labels[i] == cls][:slots]
        out[i, : len(own)] = own
    return out


class FoolingData:
    """Training batches and evaluation sets of a `DataConfig` (see `make_data`)."""

    config: DataConfig
    can_reposition = False  # whether `train_batch(..., reposition=True)` can draw new scenes

    def train_batch(self, step: int, *, batch_size: int, fool_batch: int = 0, classes=None,
                    seed: int = 0, reposition: bool = False) -> dict:  # fmt: skip
        """Batch `step`: {"image", "label", "index"} (+ "fool_image" when fool_batch > 0).

        With `reposition` (embedded scenes only), every pass over the training
        scenes (and over the training composites) draws them anew from the scene
        seed `(DataConfig.seed, 99, pass)`: training digits at new positions on new
        background crops (with the default 3,400 scenes, every training digit once
        per pass), as the base model's recipe does
        (`jaxsal.train.TrainConfig.reposition`). The first pass holds the fixed
        scenes used without it.
        """
        if reposition and not self.can_reposition:
            raise ValueError(
                f"reposition draws new embedded scenes every pass; {type(self).__name__} "
                "serves fixed records, so leave RunConfig.reposition False with this source"
            )
        n = self._num_train()
        idx = batch_indices(n, step, batch_size=batch_size, seed=seed)
        epoch = step // steps_per_epoch(n, batch_size, drop_remainder=True) if reposition else 0
        batch = self._train_records(idx, epoch)
        batch["index"] = np.full((batch_size,), step, np.int32)  # SmoothGrad's noise key
        if fool_batch:
            m = len(self.composites("train", classes)["image"])
            j = batch_indices(m, step, batch_size=fool_batch, seed=seed + 1)
            pass_ = step // steps_per_epoch(m, fool_batch, drop_remainder=True) if reposition else 0
            batch["fool_image"] = self._train_composites(classes, pass_)["image"][j]
        return batch

    def split(self, name: str) -> dict[str, np.ndarray]:
        """{"image", "label", "box"}: the validation or test images."""
        raise NotImplementedError

    def composites(self, split: str, classes) -> dict[str, np.ndarray]:
        """{"image", "boxes_c1", "boxes_c2"}: two-class composites of `classes` = (c1, c2)."""
        raise NotImplementedError

    def display(self, images: np.ndarray) -> np.ndarray:
        """Images as [0, 1] pixels for figures, (N, H, W) or (N, H, W, 3)."""
        raise NotImplementedError

    def _num_train(self) -> int:
        raise NotImplementedError

    def _train_records(self, idx, epoch: int = 0) -> dict:
        raise NotImplementedError

    def _train_composites(self, classes, epoch: int = 0) -> dict[str, np.ndarray]:
        return self.composites("train", classes)


class EmbeddedData(FoolingData):
    """Digit scenes: version 2 (photographs) or version 1 (blank canvases), see `DataConfig`."""

    can_reposition = True

    def __init__(self, config: DataConfig):
        if config.scenes not in ("photo", "blank"):
            raise ValueError(f'unknown scenes "{config.scenes}"; use "photo" or "blank"')
        self.config = config
        self._train = self._scenes("train", config.n_train, (config.seed, 99))

    def _scenes(self, split, n, seed):
        c = self.config
        if c.scenes == "photo":
            return photo_scenes(split, size=c.size, n=n, seed=seed)
        return digit_scenes(split, size=c.size, n=n, seed=seed, noise=c.noise)

    def _num_train(self):
        return len(self._train)

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one pass at a time; a pass takes ~0.1 s
    def _epoch_scenes(self, epoch):
        return self._scenes("train", self.config.n_train, (self.config.seed, 99, epoch))

    def _train_records(self, idx, epoch=0):
        scenes = self._epoch_scenes(epoch) if epoch else self._train
        return {"image": scenes.images[idx], "label": scenes.labels[idx]}

    @functools.lru_cache(maxsize=1)  # noqa: B019
    def _train_composites(self, classes, epoch=0):
        if not epoch:
            return self.composites("train", classes)
        s = self._composite_scenes("train", classes, self.config.n_fool_train,
                                   (self.config.seed, 99, epoch))  # fmt: skip
        return {"image": s.images}

    def _composite_scenes(self, split, classes, n, seed):
        c = self.config
        a, b = (int(k) for k in classes)
        if c.scenes == "photo":
            return photo_composites(split, classes=(a, b), size=c.size, n=n, seed=seed)
        return composite_scenes(split, classes=(a, b), size=c.size, n=n, seed=seed, noise=c.noise)

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one data object per study
    def split(self, name):
        c = self.config
        n = {"validation": c.n_val, "test": c.n_test}[name]
        s = self._scenes(name, n, c.seed)
        return {"image": s.images, "label": s.labels, "box": s.boxes}

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def composites(self, split, classes):
        c = self.config
        n = {"train": c.n_fool_train, "validation": c.n_fool_val, "test": c.n_fool_test}[split]
        a, b = (int(k) for k in classes)
        s = self._composite_scenes(split, (a, b), n, c.seed)
        slots = 2 if c.scenes == "photo" else 1  # objects of one class per composite
        return {"image": s.images, "boxes_c1": _boxes_of(s.labels, s.boxes, a, slots),
                "boxes_c2": _boxes_of(s.labels, s.boxes, b, slots)}  # fmt: skip

    def display(self, images):
        mean, std = ((PHOTO_MEAN, PHOTO_STD) if self.config.scenes == "photo"
                     else (BLANK_MEAN, BLANK_STD))  # fmt: skip
        return np.clip(np.asarray(images)[..., 0] * std + mean, 0.0, 1.0)


class TfdsData(FoolingData):
    """A TFDS classification set, preprocessed like torchvision's eval transform."""

    def __init__(self, config: DataConfig, *, cache_dir: str | Path | None = None):
        self.config = config
        self._cache = None if cache_dir is None else Path(cache_dir)
        self._src = {s: tfds_images.source(config.name, getattr(config, f"{k}_split"),
                                           data_dir=config.data_dir)
                     for s, k in (("train", "train"), ("validation", "val"),
                                  ("test", "test"))}  # fmt: skip

    def _num_train(self):
        n = len(self._src["train"])
        return n if self.config.num_records is None else min(n, self.config.num_records)

    def _train_records(self, idx, epoch=0):
        return tfds_images._load(self._src["train"], idx, self.config.image_size, None)

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def split(self, name):
        c = self.config
        n = min({"validation": c.n_val, "test": c.n_test}[name], len(self._src[name]))
        # validation and test may share a TFDS split: validation takes the records after test's
        start = c.n_test if name == "validation" and c.val_split == c.test_split else 0
        idx = np.arange(start, min(start + n, len(self._src[name])))
        out = tfds_images._load(self._src[name], idx, c.image_size, None)
        size = c.image_size
        out["box"] = np.tile(np.array([[0, 0, size, size]], np.int32), (len(idx), 1))
        return out

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def composites(self, split, classes):
        c = self.config
        n = {"train": c.n_fool_train, "validation": c.n_fool_val, "test": c.n_fool_test}[split]
        path = None
        if self._cache is not None:
            path = self._cache / (f"composites-{c.name}-{split}-{classes[0]}-{classes[1]}-{n}-"
                                  f"{c.image_size}-{c.seed}.npz")  # fmt: skip
            if path.exists():
                with np.load(path) as f:
                    return dict(f)
        comp = tfds_images.composites(self._src[split], classes=tuple(classes), n=n,
                                      seed=c.seed, image_size=c.image_size)  # fmt: skip
        half = c.image_size // 2
        cell_boxes = np.array([[r * half, q * half, (r + 1) * half, (q + 1) * half]
                               for r in (0, 1) for q in (0, 1)], np.int32)  # fmt: skip
        boxes = np.tile(cell_boxes[None], (len(comp["cells"]), 1, 1))
        out = {"image": comp["image"],
               "boxes_c1": _boxes_of(comp["cells"], boxes, classes[0], 3),
               "boxes_c2": _boxes_of(comp["cells"], boxes, classes[1], 3)}  # fmt: skip
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **out)
        return out

    def display(self, images):
        from jaxsal.preprocess import imagenet_display

        return np.asarray(imagenet_display(np.asarray(images)))


def make_data(config: DataConfig, *, cache_dir: str | Path | None = None) -> FoolingData:
    """The `FoolingData` of a configuration."""
    if config.source == "embedded":
        return EmbeddedData(config)
    if config.source == "tfds":
        return TfdsData(config, cache_dir=cache_dir)
    raise ValueError(f'unknown data source "{config.source}"; use "embedded" or "tfds"')
