"""The sanity study's configuration records (frozen dataclasses; config files return them)."""

from __future__ import annotations

import dataclasses

from experiments.common.models import EMBEDDED
from jaxsal.sanity import AttackConfig
from jaxsal.train import TrainConfig

# The methods of Adebayo et al. (names of `jaxsal.methods`), in the paper's order.
PAPER_METHODS = ("simple_grad", "smoothgrad", "vargrad", "integrated_gradients", "input_x_grad",
                 "guided_backprop", "gradcam", "guided_gradcam")  # fmt: skip
# Not in the paper: two LRP composites (about the cost of a gradient each).
LRP_METHODS = ("lrp_epsilon_plus", "lrp_epsilon_alpha2_beta1")


@dataclasses.dataclass(frozen=True)
class ShuffledConfig:
    """The data-randomisation model: the base architecture fitted to shuffled labels.

    Attributes:
      n_train: training scenes (the same scenes every epoch, so they can be memorised).
      epochs: passes over them.
      batch_size: scenes per step.
      learning_rate: peak Adam learning rate (warm-up, then cosine decay to zero).
      warmup_steps: linear warm-up steps.
      scene_seed: seed of the training scenes (the labels are shuffled with the study's seed).
      fit_level: training accuracy (inference mode) from which the model counts as fitted
        (this project's constant; the paper trains "to convergence").
    """

    n_train: int = 256
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    scene_seed: int = 1
    fit_level: float = 0.9


@dataclasses.dataclass(frozen=True)
class ManipulationConfig:
    """The attack of Dombrowski et al. and the beta-smoothing defence.

    Attributes:
      methods: methods attacked on the ReLU network (through the beta 10 -> 100 surrogate).
      defence_methods: methods also attacked directly on each beta-smoothed network.
      betas: the defence's betas (the paper shows 10, 3 and 1).
      scenes: the first test scenes attacked; the target of scene i is the map of scene i + 1.
      attack: the attack's constants (the paper's: Adam lr 2e-4, 1,500 steps, weights 1e11
        and 1e6); `beta_start` / `beta_end` apply to the ReLU attack only.
      figure_scenes: scenes shown in the manipulation figure.
    """

    methods: tuple[str, ...] = ("simple_grad", "input_x_grad")
    defence_methods: tuple[str, ...] = ("simple_grad",)
    betas: tuple[float, ...] = (10.0, 3.0, 1.0)
    scenes: int = 20
    attack: AttackConfig = AttackConfig()
    figure_scenes: int = 3


@dataclasses.dataclass(frozen=True)
class SanityConfig:
    """The whole study.

    Attributes:
      train: the base model's recipe (`experiments.common.models.EMBEDDED`); seed s of the
        study uses base model seed s.
      scenes: test scenes of the randomisation tests (the first of `photo_scenes("test")`).
      scene_seed: seed of the test scenes (fixed across the study's seeds).
      methods: the methods checked (names of `jaxsal.methods`).
      smoothgrad_samples / vargrad_samples / ig_steps: the paper's 50 / 25 / 50.
      noise_level: SmoothGrad / VarGrad noise, a share of each image's range (0.15).
      batch_size: scenes per explanation call.
      group_batchnorm: randomise each conv together with its BatchNorm (one "layer" of
        the cascade); False randomises them as separate layers.
      shuffled: the data-randomisation model.
      manipulation: the attack and the defence.
      seeds: how many times the study runs (seeds 0 .. seeds-1).
      figure_scenes: scenes shown in the cascade figure.
      conv: the conv backend of the explanations (`ModelParams.with_conv`).
      tuned: what was tuned, on which split (a record for the report).
    """

    train: TrainConfig = EMBEDDED
    scenes: int = 50
    scene_seed: int = 0
    methods: tuple[str, ...] = PAPER_METHODS + LRP_METHODS
    smoothgrad_samples: int = 50
    vargrad_samples: int = 25
    ig_steps: int = 50
    noise_level: float = 0.15
    batch_size: int = 10
    group_batchnorm: bool = True
    shuffled: ShuffledConfig = ShuffledConfig()
    manipulation: ManipulationConfig = ManipulationConfig()
    seeds: int = 1
    figure_scenes: int = 3
    conv: str = "auto"
    tuned: str = ""
