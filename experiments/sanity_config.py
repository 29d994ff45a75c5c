"""Configurations of the sanity-checks experiment: the embedded default, a quick one, a photo one.

python -m experiments.sanity --workdir runs/sanity                  # embedded default
python -m experiments.sanity --workdir runs/sanity_quick --quick    # seconds-scale smoke run
python -m experiments.sanity --workdir runs/sanity_vgg --checkpoint ckpt/vgg16   # photos
"""

from __future__ import annotations

import dataclasses

from jaxsal.sanity import AttackConfig
from jaxsal.training import TrainConfig

LRP_COMPOSITES = ("paper", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                  "epsilon_gamma_box")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SanityConfig:
    """What the experiment runs.

    Attributes:
      train: the embedded model's training configuration (ignored with `checkpoint`).
      checkpoint: a `jaxsal.save` directory (e.g. a converted torchvision model);
        None uses the embedded small CNN on digit scenes.
      photos: scikit-image photos for a checkpoint (`skimage.data.<name>()`).
      image_size: side of the photos after centre crop and resize (224).
      images: digit test scenes for the embedded model.
      samples: SmoothGrad samples (paper: 50).
      var_samples: VarGrad samples (paper: 25).
      ig_steps: Integrated Gradients steps (paper: 50), zero baseline.
      lrp_composites: the LRP composites checked (names of `jaxsal.lrp`).
      shuffled_steps: training steps of the shuffled-label model (data randomisation).
      attack: the manipulation attack's constants (paper: 1,500 steps).
      attack_methods: methods attacked (names of the method table).
      defence_betas: the beta-smoothed explanations shown and attacked (10, 3, 1).
      defence_methods: methods also attacked directly at each defence beta.
      attack_ig_steps: Integrated Gradients steps inside the attack.
      seed: seed of the noise, the fresh weights and the label shuffle.
    """

    train: TrainConfig = TrainConfig()
    checkpoint: str | None = None
    photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut")
    image_size: int = 224
    images: int = 4
    samples: int = 50
    var_samples: int = 25
    ig_steps: int = 50
    lrp_composites: tuple[str, ...] = LRP_COMPOSITES
    shuffled_steps: int = 150
    attack: AttackConfig = AttackConfig(steps=300, chunk=50)
    attack_methods: tuple[str, ...] = ("gradient", "gradient_x_input", "guided_backprop",
                                       "integrated_gradients", "lrp_epsilon_plus")  # fmt: skip
    defence_betas: tuple[float, ...] = (10.0, 3.0, 1.0)
    defence_methods: tuple[str, ...] = ("gradient",)
    attack_ig_steps: int = 8
    seed: int = 0


def get_config(*, quick: bool = False, checkpoint: str | None = None) -> SanityConfig:
    """The embedded default (300 attack steps, not the paper's 1,500: CPU minutes), a quick
    smoke configuration (seconds), or the photo configuration for a checkpoint (paper's steps)."""
    if checkpoint is not None:
        return SanityConfig(checkpoint=checkpoint, attack=AttackConfig(), images=3,
                            lrp_composites=("epsilon_plus", "epsilon_gamma_box"))  # fmt: skip
    if not quick:
        return SanityConfig()
    train = TrainConfig(size=64, n_train=512, n_eval=200, epochs=2, batch_size=32, warmup_steps=5)
    return SanityConfig(
        train=train, images=2, samples=4, var_samples=4, ig_steps=4,
        lrp_composites=("epsilon_plus",), shuffled_steps=10,
        attack=AttackConfig(steps=10, chunk=5, learning_rate=1e-2),
        attack_methods=("gradient", "lrp_epsilon_plus"), attack_ig_steps=2,
    )  # fmt: skip
