"""The trustworthy-CNN study's configuration records (frozen dataclasses; config files return them)."""

from __future__ import annotations

import dataclasses

from experiments.common.models import EMBEDDED
from jaxsal.train import TrainConfig
from jaxsal.trust import TrustConfig

METHODS = ("gradcam", "guided_gradcam")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from.

    Attributes:
      source: "embedded" (version-2 scenes: MNIST digits on photographs, with
        boxes; no download) or "tfds" (a TFDS image-classification data set, no boxes).
      size: canvas side of the embedded scenes (the base model's).
      n_train: training scenes of the heads (embedded).
      n_val: validation scenes (tuning only).
      n_test: test scenes (the reported figures).
      seed: scene seed (fixed across the study's seeds).
      name: TFDS name, e.g. "cats_vs_dogs".
      train_split / val_split / test_split: TFDS splits.
      data_dir: TFDS data directory.
      image_size: TFDS crop side (224 in the paper).
      num_train / num_val / num_test: use only the first records of a TFDS split (None: all).
      num_classes: classes of a TFDS task (2 for cats vs dogs).
    """

    source: str = "embedded"
    size: int = 96
    n_train: int = 3400
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    name: str = "cats_vs_dogs"
    train_split: str = "train[:70%]"
    val_split: str = "train[70%:80%]"
    test_split: str = "train[80%:]"
    data_dir: str | None = None
    image_size: int = 224
    num_train: int | None = None
    num_val: int | None = None
    num_test: int | None = None
    num_classes: int = 2


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """One head trained from scratch on the frozen backbone.

    Attributes:
      name: row name, e.g. "baseline" or "trust gradcam".
      method: saliency inside the loss ("gradcam", "guided_gradcam"), None for
        the cross-entropy baseline (eq. 1).
      lr: SGD learning rate.
      use_r1 / use_r2: False gives the paper's ablation R1 = 0 / R2 = 0.
      init: offset of the head's initialisation and batch-order seed (seed s
        uses `s + 1000 * init`); the second baseline has init 1, so baseline vs
        second baseline is the distance two unpenalised trainings already have.
    """

    name: str
    method: str | None
    lr: float
    use_r1: bool = True
    use_r2: bool = True
    init: int = 0

    def loss(self, lam: float) -> TrustConfig:
        """The `TrustConfig` of this head (Grad-CAM at the new layer, `head.1`)."""
        return TrustConfig(method=self.method, layer="head", lam=lam, use_r1=self.use_r1,
                           use_r2=self.use_r2)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The whole study.

    Attributes:
      data: the images.
      base: the recipe of the embedded backbone (`experiments.common.models.base_model`,
        seed s for study seed s); ignored when `weights` is given.
      arch: torchvision architecture of `weights` (tfds set-up).
      weights: a torchvision .pth or a `jaxsal.save` directory of the backbone
        (one backbone for every seed).
      filters: channels of the new 1x1 conv (256 in the paper).
      lam: lambda of eq. 7 (0.9 in the paper).
      epochs: passes over the training images.
      batch_size: images per step (32 in the paper).
      heads: the heads trained for every seed; the first is the reference
        ("baseline") of every SSIM and difference.
      methods: post hoc maps scored.
      seeds: study seeds 0 .. seeds-1.
      cache_features: train heads whose loss needs no input-level map on the
        backbone's features computed once (`jaxsal.trust.transfer_head`; the
        same numbers, much faster); False runs the whole model every step.
      eval_batch: images per evaluation call.
      checkpoint_every: training checkpoint interval (steps).
      examples: test images in the map figure.
      tuned: what was tuned, on which split and how (a record for the report).
    """

    data: DataConfig = DataConfig()
    base: TrainConfig = EMBEDDED
    arch: str = "mobilenet_v2"
    weights: str | None = None
    filters: int = 256
    lam: float = 0.9
    epochs: int = 10
    batch_size: int = 32
    heads: tuple[HeadConfig, ...] = ()
    methods: tuple[str, ...] = METHODS
    seeds: int = 3
    cache_features: bool = True
    eval_batch: int = 100
    checkpoint_every: int = 200
    examples: int = 4
    tuned: str = ""

    def __post_init__(self):
        if not self.heads or self.heads[0].method is not None:
            raise ValueError("heads must start with the cross-entropy baseline (method None)")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must differ, got {names}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown post hoc methods {bad}; use {METHODS}")
        self.heads[0].loss(self.lam)  # checks lambda
