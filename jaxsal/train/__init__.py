"""The one training engine: a loss signature, a step, a loop, data parallelism, the base models.

Every training in jaxsal is `loss_fn(params, batch, frozen) -> (loss, aux)`
run by `fit` (jitted data-parallel steps over a one-axis mesh, orbax
checkpoints with exact resume, a progress bar, optional guards), with the
optimiser applied to the trained leaves only (`trainable_mask`). The
supervised pieces (cross-entropy, evaluation, metrics) and the base-model
recipe of the embedded studies live here too.
"""

from jaxsal.train._loop import TrainingStalled, chance_guard, checkpoint_manager, fit, signature
from jaxsal.train._mesh import AXIS, make_mesh, mesh_for, replicate, shard_batch, to_host
from jaxsal.train._recipe import (
    EpochBatches,
    TrainConfig,
    cache_path,
    eval_scenes,
    make_optimizer,
    train_base_model,
    train_or_load,
)
from jaxsal.train._step import LossFn, make_step, masked, trainable_mask
from jaxsal.train._supervised import (
    classification_loss,
    classification_metrics,
    cross_entropy,
    evaluate,
    predict,
)

__all__ = [
    "AXIS",
    "EpochBatches",
    "LossFn",
    "TrainConfig",
    "TrainingStalled",
    "cache_path",
    "chance_guard",
    "checkpoint_manager",
    "classification_loss",
    "classification_metrics",
    "cross_entropy",
    "eval_scenes",
    "evaluate",
    "fit",
    "make_mesh",
    "make_optimizer",
    "make_step",
    "masked",
    "mesh_for",
    "predict",
    "replicate",
    "shard_batch",
    "signature",
    "to_host",
    "train_base_model",
    "train_or_load",
    "trainable_mask",
]
