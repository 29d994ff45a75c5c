"""Configurations of the main job: the default and a quick variant for smoke tests.

python -m experiments.main --workdir runs/default           # default
python -m experiments.main --workdir runs/quick --quick     # seconds-scale smoke run
"""

from __future__ import annotations

import dataclasses

from jaxsal.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The main job: a model to train (or load) and the interpreters' settings.

    Attributes:
      train: the model's training configuration (its hash keys the model cache).
      scenes: held-out test scenes shown in the figure and scored.
      samples: SmoothGrad samples.
      var_samples: VarGrad samples.
      steps: Integrated Gradients steps.
      tolerance: pointing-game tolerance in pixels (0: the argmax must be in the box).
      seed: seed of the stochastic interpreters.
    """

    train: TrainConfig = TrainConfig()
    scenes: int = 6
    samples: int = 50
    var_samples: int = 25
    steps: int = 50
    tolerance: float = 0.0
    seed: int = 0


def get_config(*, quick: bool = False) -> JobConfig:
    """The default job (CPU minutes on first run) or the quick one (seconds; low accuracy)."""
    if not quick:
        return JobConfig()
    train = TrainConfig(size=64, n_train=512, n_eval=200, epochs=2, batch_size=32, warmup_steps=5)
    return JobConfig(train=train, scenes=3, samples=10, var_samples=10, steps=16)
