"""Configurations of the sanity-checks experiment: the embedded default, a quick one, a photo one.

python -m experiments.sanity --workdir runs/sanity                  # embedded default
python -m experiments.sanity --workdir runs/sanity_quick --quick    # smoke run (64 px model)
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
      methods: the methods checked (names of `experiments.sanity.method_table`;
        None: all, LRP composites included).
      samples: SmoothGrad samples (paper: 50).
      var_samples: VarGrad samples (paper: 25).
      ig_steps: Integrated Gradients steps (paper: 50), zero baseline.
      lrp_composites: the LRP composites checked (names of `jaxsal.lrp`).
      shuffled_steps: training steps of the shuffled-label model (data randomisation;
        the paper trains to convergence, 100 steps leave it at chance).
      attack: the manipulation attack's constants (paper: 1,500 steps).
      attack_methods: methods attacked (names of the method table).
      defence_betas: the beta-smoothed explanations shown and attacked (10, 3, 1).
      defence_methods: methods also attacked directly at each defence beta
        (the attacker knows beta; none by default: CPU minutes).
      attack_ig_steps: Integrated Gradients steps inside the attack.
      seed: seed of the noise, the fresh weights and the label shuffle.
    """

    train: TrainConfig = TrainConfig()
    checkpoint: str | None = None
    photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut")
    image_size: int = 224
    images: int = 4
    methods: tuple[str, ...] | None = None
    samples: int = 50
    var_samples: int = 25
    ig_steps: int = 50
    lrp_composites: tuple[str, ...] = ("epsilon_plus", "epsilon_alpha2_beta1")
    shuffled_steps: int = 100
    attack: AttackConfig = AttackConfig(steps=500, chunk=50)
    attack_methods: tuple[str, ...] = ("gradient", "gradient_x_input")
    defence_betas: tuple[float, ...] = (10.0, 3.0, 1.0)
    defence_methods: tuple[str, ...] = ()
    attack_ig_steps: int = 8
    seed: int = 0


def get_config(*, quick: bool = False, checkpoint: str | None = None) -> SanityConfig:
    """The embedded default, a quick smoke configuration, or the photo configuration.

    The embedded default (about 10 CPU minutes on 2 cores) keeps the papers'
    SmoothGrad / VarGrad / IG counts but checks 2 of the 5 LRP composites, attacks
    gradient and gradient x input for 500 steps (the paper: 1,500) and trains the
    shuffled-label model 100 steps. The photo configuration keeps the paper's
    1,500 attack steps; `quick` runs in well under a minute (untuned numbers).
    """
    if checkpoint is not None:
        config = SanityConfig(checkpoint=checkpoint, attack=AttackConfig(), images=3,
                              lrp_composites=("epsilon_plus", "epsilon_gamma_box"))  # fmt: skip
    else:
        config = SanityConfig()
    if not quick:
        return config
    train = TrainConfig(size=64, n_train=512, n_eval=200, epochs=2, batch_size=32, warmup_steps=5)
    return dataclasses.replace(
        config, train=train, images=2, image_size=112, samples=4, var_samples=4, ig_steps=4,
        lrp_composites=("epsilon_plus",), shuffled_steps=10,
        attack=AttackConfig(steps=10, chunk=5), attack_methods=("gradient", "lrp_epsilon_plus"),
        attack_ig_steps=2,
    )  # fmt: skip
