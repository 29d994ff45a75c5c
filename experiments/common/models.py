"""The base model of every embedded study: one recipe, trained once per seed and cached.

`EMBEDDED` is the small CNN with BatchNorm on the version-2 scenes (digits on
photographs); `base_model(cache_dir, seed)` trains it with seed `seed` (or
loads it from `cache_dir`, `jaxsal.train.train_or_load`). Every study that
explains a model trained on the embedded data takes it from here, so the
studies share their models and a recipe is defined once. See docs/fooling.md
for how the recipe was chosen (validation split) and what it reaches.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxsal.params import ModelParams
from jaxsal.train import TrainConfig, train_or_load

# Chosen on the validation split (seed 0; docs/fooling.md, "The base model"): the
# small CNN without BatchNorm sat at chance for ~250 steps at 96 px; with
# BatchNorm, 64 px, batch 64 and Adam 4e-3 it leaves chance within the first
# epoch under either conv backend; 20 epochs.
EMBEDDED = TrainConfig(arch="small_cnn_bn", scenes="photo", size=64, epochs=20, batch_size=64,
                       learning_rate=4e-3, warmup_steps=100, conv="auto", guard_step=300)  # fmt: skip


def base_model(
    cache_dir: str | Path,
    seed: int = 0,
    *,
    config: TrainConfig = EMBEDDED,
    conv: str = "auto",
    progress: bool = True,
) -> tuple[ModelParams, dict]:
    """The base model of seed `seed` (trained, or loaded from `cache_dir`) and its record.

    Args:
      cache_dir: the model cache (`jaxsal.train.train_or_load`).
      seed: added to `config.seed`.
      config: the recipe.
      conv: the conv backend the returned model runs with (the recipe may train with another).
      progress: progress bars while training.

    Returns:
      (params, record): the record holds "validation" and "test" accuracy, the
      training time and the cache path.
    """
    recipe = dataclasses.replace(config, seed=config.seed + seed)
    params, record = train_or_load(cache_dir, recipe, progress=progress)
    return params.with_conv(conv), record
