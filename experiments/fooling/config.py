"""The fooling study's configuration records (frozen dataclasses; config files return them)."""

from __future__ import annotations

import dataclasses

from experiments.common.workdir import OMIT_AT_DEFAULT
from jaxsal.fooling.objective import Fooling
from jaxsal.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the study's images come from.

    Attributes:
      source: "embedded" (digit scenes, no download) or "tfds".
      scenes: embedded scenes: "photo" (digits on photographs, version 2) or
        "blank" (version 1, blank canvases with pixel noise).
      name: TFDS name (source "tfds"), e.g. "imagenet2012".
      train_split / val_split / test_split: TFDS splits.
      data_dir: TFDS data directory.
      image_size: TFDS crop size (224 in the paper).
      num_records: use only the first records of the training split (None: all).
      size: canvas side of the digit scenes.
      noise: pixel noise of the blank scenes.
      n_train: training scenes fine-tuned on.
      n_val: validation images (calibration and tuning only).
      n_test: test images (the reported figures).
      classes: (c1, c2) of active fooling; None: chosen on validation composites
        (the pair whose original maps are most distinct, `calibrate.choose_classes`).
      n_fool_train / n_fool_val / n_fool_test: composites of active fooling.
      seed: seed of the scenes and composites (fixed across the study's seeds).
    """

    source: str = "embedded"
    scenes: str = "photo"
    name: str = "imagenet2012"
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "validation"
    data_dir: str | None = None
    image_size: int = 224
    num_records: int | None = None
    size: int = 64
    noise: float = 0.0
    n_train: int = 3400
    n_val: int = 2000
    n_test: int = 2000
    classes: tuple[int, int] | None = None
    n_fool_train: int = 1100
    n_fool_val: int = 1000
    n_fool_test: int = 1000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One fooling fine-tuning.

    Attributes:
      kind: "location", "topk", "center_mass" or "active".
      method: the method fooled (a name of `jaxsal.methods`).
      lam: lambda of `CE + lam * L_F`.
      lr: Adam learning rate.
      steps: optimisation steps.
      batch_size: images per step for the cross-entropy (and passive penalties).
      fool_batch: composites per step (active fooling).
      samples: SmoothGrad samples (method "smoothgrad").
      robust_eps: when set, the cross-entropy is taken on FGSM examples of this
        radius (fooling an adversarially trained model while keeping its robustness).
      name: directory name (default "kind-method").
      keep_logits: active fooling only, not in the paper: weight of the logit
        floor on the composites (`jaxsal.fooling.Fooling.keep_logits`).
      reposition: embedded scenes only: every pass over the training scenes (and
        composites) draws them anew, training digits at new positions on new
        background crops, as the base model's recipe does (False: one fixed set,
        seen again every pass; `FoolingData.train_batch`).
    """

    kind: str
    method: str
    lam: float
    lr: float
    steps: int
    batch_size: int = 16
    fool_batch: int = 8
    samples: int = 8
    robust_eps: float | None = None
    name: str | None = None
    keep_logits: float = dataclasses.field(default=0.0, metadata=OMIT_AT_DEFAULT)  # added later
    reposition: bool = dataclasses.field(default=False, metadata=OMIT_AT_DEFAULT)  # added later

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}-{self.method}"

    def fooling(self, classes) -> Fooling:
        """The `Fooling` of this run (classes are used by active fooling only)."""
        return Fooling(kind=self.kind, method=self.method, lam=self.lam, samples=self.samples,
                       classes=tuple(classes) if self.kind == "active" else None,
                       keep_logits=self.keep_logits)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What is measured on every fooled model.

    Attributes:
      methods: methods of the FSR columns (the transfer matrix).
      batch_size: images per evaluation call.
      calibrate: narrow each test's interval on validation data so that the
        original model passes it for at most `calibration_level` of the images
        (`calibrate.intervals`); False: the paper's intervals.
      calibration_level: that share (0.05).
      aopc_runs: runs with AOPC curves ("all", or a tuple of run names; () for none).
      aopc_images: test images of the AOPC curves.
      aopc_steps: patches removed (None: all).
      sample_images: images of the before / after map figures.
    """

    methods: tuple[str, ...] = ("gradcam", "lrp_t", "simple_grad_t", "lrp")
    batch_size: int = 100
    calibrate: bool = True
    calibration_level: float = 0.05
    aopc_runs: str | tuple[str, ...] = "all"
    aopc_images: int = 200
    aopc_steps: int | None = 36
    sample_images: int = 4


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """The optional analyses (`StudyConfig.analyses` selects which run).

    Attributes:
      noise_run: run whose weights get Gaussian noise.
      noise_levels: relative noise levels (see `jaxsal.fooling.perturb_params`).
      adv_eps: L-inf radius of free adversarial training (model input units).
      adv_replays: replays m of each minibatch.
      adv_steps: minibatches of free adversarial training.
      adv_lr: its Adam learning rate.
      adv_batch: its batch size.
      adv_run: the fooling of the adversarially trained model.
      smoothgrad_run: the SmoothGrad fooling.
    """

    noise_run: str = "location-gradcam"
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2)
    adv_eps: float = 0.25
    adv_replays: int = 4
    adv_steps: int = 150
    adv_lr: float = 1e-3
    adv_batch: int = 32
    adv_run: RunConfig | None = None
    smoothgrad_run: RunConfig | None = None


ANALYSES = ("noise", "adversarial", "smoothgrad")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The whole study.

    Attributes:
      data: the images.
      train: training of the original model on the embedded scenes (when no
        checkpoint is given); seed s of the study trains with `seed=train.seed + s`.
      checkpoint: a `jaxsal.save` checkpoint of the original model (one model for all seeds).
      runs: the foolings.
      eval: what is measured.
      analyses: which of `ANALYSES` run (for every seed).
      analysis: their settings.
      seeds: how many times the study runs (base model and fooling seeds 0 .. seeds-1).
      checkpoint_every: fine-tuning checkpoint interval.
      conv: the conv backend of the foolings and evaluations (`ModelParams.with_conv`;
        the base model's recipe may train with another).
      tuned: what was tuned, on which split and how (a record for the report).
    """

    data: DataConfig = DataConfig()
    train: TrainConfig | None = TrainConfig(scenes="photo")
    checkpoint: str | None = None
    runs: tuple[RunConfig, ...] = ()
    eval: EvalConfig = EvalConfig()
    analyses: tuple[str, ...] = ()
    analysis: AnalysisConfig = AnalysisConfig()
    seeds: int = 1
    checkpoint_every: int = 50
    conv: str = "auto"
    tuned: str = ""
