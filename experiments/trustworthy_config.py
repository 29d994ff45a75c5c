"""Configurations of the trustworthy-CNN experiments (Halliwell & Lecue).

Embedded default (no download; digit scenes with known boxes, CPU minutes):

    python -m experiments.trustworthy --workdir runs/trustworthy

Full scale (converted torchvision weights, TFDS data prepared beforehand):

    python -m experiments.trustworthy --workdir runs/trust_mnv2 --preset mobilenet_cats_dogs \
        --weights mobilenet_v2.pth --data-dir ~/tensorflow_datasets
    python -m experiments.trustworthy --workdir runs/trust_vgg --preset vgg16_imagenet \
        --weights vgg16.pth --lr 0.01 --lam 0.9     # one point of the paper's grid

A small local variant for a laptop: `--preset smoke` (seconds, tiny model).
"""

from __future__ import annotations

import dataclasses

from jaxsal.training import TrainConfig
from jaxsal.trust import TrustConfig


def variants(*, lam: float, layer: str, ablate: tuple[str, ...] = ("gradcam",),
             methods: tuple[str, ...] = ("gradcam", "guided_gradcam"),
             ground_truth: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Baseline (cross-entropy), the trustworthy losses, the R1 = 0 / R2 = 0 ablations, and
    the eq. 8-10 variants (PWCE to the box map) for the methods in `ground_truth`."""
    out = {"baseline": TrustConfig(method=None, layer=layer, lam=lam)}
    for m in methods:
        out[m] = TrustConfig(method=m, layer=layer, lam=lam)
    for m in ablate:
        out[f"{m} r1=0"] = TrustConfig(method=m, layer=layer, lam=lam, use_r1=False)
        out[f"{m} r2=0"] = TrustConfig(method=m, layer=layer, lam=lam, use_r2=False)
    for m in ground_truth:
        out[f"{m} pwce"] = TrustConfig(method=m, layer=layer, lam=lam, ground_truth=True)
    return out


@dataclasses.dataclass(frozen=True)
class SceneExperiment:
    """Fine-tuning one layer of the small CNN on digit scenes, scored against the boxes.

    Attributes:
      train: the base model's training (`train_or_load`; its hash keys the cache).
      trainable: the one layer that is fine-tuned (the small CNN's last conv).
      cam_layer: Grad-CAM's layer in the loss and post hoc (the last conv's ReLU).
      lam: lambda of eq. 7.
      learning_rate: SGD learning rate (the paper uses SGD).
      steps: fine-tuning steps per model.
      batch_size: scenes per step (a multiple of the device count).
      n_finetune: fine-tuning scenes (drawn from the training digits, new positions).
      n_test: test scenes scored.
      ablate: saliency methods whose R1 = 0 and R2 = 0 ablations are trained.
      ground_truth: methods also trained with the eq. 8-10 loss (PWCE to the box map).
      examples: test scenes shown in the figure.
      tolerance: pointing-game tolerance in pixels.
      seed: seed of the fine-tuning scenes and their order.
    """

    train: TrainConfig = TrainConfig()
    trainable: str = "features.11"
    cam_layer: str = "last_conv"
    lam: float = 0.9
    learning_rate: float = 0.1
    steps: int = 40
    batch_size: int = 32
    n_finetune: int = 1280
    n_test: int = 500
    ablate: tuple[str, ...] = ("gradcam",)
    ground_truth: tuple[str, ...] = ("gradcam",)
    examples: int = 4
    tolerance: float = 0.0
    seed: int = 1

    def variants(self) -> dict[str, TrustConfig]:
        return variants(lam=self.lam, layer=self.cam_layer, ablate=self.ablate,
                        ground_truth=self.ground_truth)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TfdsExperiment:
    """The paper's full-scale set-ups on a TFDS image-classification data set.

    Attributes:
      arch: torchvision architecture of the converted weights.
      weights: a torchvision state dict (.pth) or a `jaxsal.save` directory; None
        gives random weights (only for smoke tests).
      transfer: add the new 1x1 conv (256 filters) + softmax head (MobileNetV2 set-up).
      num_classes: classes of the task (2 for cats vs dogs; 1000 for ImageNet).
      trainable: the layers that are trained; all others are frozen.
      cam_layer: Grad-CAM's layer.
      dataset: TFDS name.
      train_split: split used for training.
      test_split: split used for the metrics.
      num_train: training records (None: all; 30,000 for the VGG16 subset).
      num_test: test records (None: all).
      image_size: input side.
      epochs: training epochs.
      batch_size: images per step.
      learning_rate: SGD learning rate.
      lam: lambda of eq. 7.
      ablate: methods whose R1 = 0 / R2 = 0 ablations are trained.
      methods: saliency methods of the trustworthy models (and of the post hoc maps).
      data_dir: TFDS data directory.
      filters: channels of the new 1x1 conv.
      seed: seed of the head's initialisation and the shuffling.
    """

    arch: str = "mobilenet_v2"
    weights: str | None = None
    transfer: bool = True
    num_classes: int = 2
    trainable: tuple[str, ...] = ("head", "classifier")
    cam_layer: str = "head"
    dataset: str = "cats_vs_dogs"
    train_split: str = "train[:80%]"
    test_split: str = "train[80%:]"
    num_train: int | None = None
    num_test: int | None = None
    image_size: int = 224
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 0.01
    lam: float = 0.9
    ablate: tuple[str, ...] = ("gradcam", "guided_gradcam")
    methods: tuple[str, ...] = ("gradcam", "guided_gradcam")
    data_dir: str | None = None
    filters: int = 256
    seed: int = 0

    def variants(self) -> dict[str, TrustConfig]:
        return variants(lam=self.lam, layer=self.cam_layer, ablate=self.ablate,
                        methods=self.methods)  # fmt: skip


def embedded() -> SceneExperiment:
    """The default: small CNN on digit scenes (about 7 CPU minutes on 2 cores)."""
    return SceneExperiment()


def smoke_config() -> SceneExperiment:
    """Seconds-scale variant for tests: a tiny model trained for 2 epochs at 64 px."""
    train = TrainConfig(size=64, n_train=256, n_eval=64, epochs=1, batch_size=32, warmup_steps=2)
    return SceneExperiment(train=train, steps=2, batch_size=16, n_finetune=64, n_test=32,
                           examples=2, ablate=())  # fmt: skip


def mobilenet_cats_dogs(**overrides) -> TfdsExperiment:
    """MobileNetV2 + 1x1 conv (256) + softmax on cats vs dogs: 50 epochs, batch 32, SGD .01, lambda .9."""
    return dataclasses.replace(TfdsExperiment(), **overrides)


def vgg16_imagenet(*, learning_rate: float = 0.01, lam: float = 0.9, **overrides) -> TfdsExperiment:
    """VGG16, only block5_conv3 (`features.28`) trained, on 30,000 ImageNet images."""
    cfg = TfdsExperiment(arch="vgg16", transfer=False, num_classes=1000,
                         trainable=("features.28",), cam_layer="last_conv",
                         dataset="imagenet2012", train_split="train", test_split="validation",
                         num_train=30_000, epochs=1, learning_rate=learning_rate, lam=lam,
                         ablate=())  # fmt: skip
    return dataclasses.replace(cfg, **overrides)


def vgg16_grid() -> list[TfdsExperiment]:
    """The paper's grid: learning rate in {.01, .1, .3} x lambda in {.9, .7, .5}."""
    return [vgg16_imagenet(learning_rate=lr, lam=lam) for lr in (0.01, 0.1, 0.3)
            for lam in (0.9, 0.7, 0.5)]  # fmt: skip


PRESETS = {"embedded": embedded, "smoke": smoke_config, "mobilenet_cats_dogs": mobilenet_cats_dogs,
           "vgg16_imagenet": vgg16_imagenet}  # fmt: skip
