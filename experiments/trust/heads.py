"""The backbone, and one new head trained from scratch on it (resumable), the paper's set-up.

`backbone(config, seed)` is the frozen feature extractor: the shared base
model of seed s (`experiments.common.models.base_model`) on the embedded
scenes, or converted torchvision weights (`config.weights`) for TFDS data.
`train_head` puts a new 1x1 conv (`head.0`, `config.filters` filters) and a
dense classifier on it (`jaxsal.trust.transfer_model`, initialised with seed
`s + 1000 * head.init`) and trains only those with SGD on the trustworthy
loss (`jaxsal.trust.trust_loss`, Grad-CAM at `head.1`) through the training
engine (`jaxsal.train.fit`: checkpoints, exact resume). A finished head is
stored with `jaxsal.save` in `RUN_DIR/model` and its record (loss history,
time) in `RUN_DIR/run.json`; a rerun loads it.

Heads whose loss needs no input-level map train on the backbone's features,
computed once (`Features`, `jaxsal.trust.transfer_head`): the same numbers
as the whole model (Grad-CAM at `head.1` only involves the new layers), in a
fraction of the time. Guided Grad-CAM back-propagates to the input, so its
heads run the whole `TransferNet` every step.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import optax

import jaxsal
from experiments.common import as_json, base_model, write_json
from experiments.trust.config import HeadConfig, StudyConfig
from experiments.trust.data import StudyData
from jaxsal.data.tfds_images import batch_indices
from jaxsal.params import ModelParams
from jaxsal.train import fit, mesh_for
from jaxsal.trust import transfer_features, transfer_head, transfer_model, trust_loss, with_head

TRAINABLE = ("head", "classifier")


def backbone(config: StudyConfig, seed: int, *, models_dir: Path, progress: bool = True):
    """The frozen backbone of study seed `seed` and its record.

    Embedded data: the shared base model of seed `seed` (trained once, cached in
    `models_dir`). TFDS data: `config.weights` (a torchvision .pth of
    `config.arch`, or a `jaxsal.save` directory), the same for every seed.
    """
    if config.weights is not None:
        if Path(config.weights).is_dir():
            return jaxsal.load(config.weights), {"weights": str(config.weights)}
        from weights_convert import from_torchvision

        return from_torchvision(config.arch, config.weights), {"weights": str(config.weights)}
    if config.data.source != "embedded":
        raise ValueError("TFDS data need a backbone: set StudyConfig.weights (or --weights)")
    params, record = base_model(models_dir, seed, config=config.base, progress=progress)
    keep = ("path", "cached", "train_seconds", "validation", "test")
    return params, {k: record[k] for k in keep if k in record}


def start_model(backbone_params: ModelParams, head: HeadConfig, config: StudyConfig, seed: int,
                num_classes: int) -> ModelParams:  # fmt: skip
    """The `TransferNet` before training: the backbone plus freshly initialised new layers."""
    key = jax.random.key(head_seed(head, seed))
    return transfer_model(backbone_params, key, num_classes=num_classes, filters=config.filters)


def head_seed(head: HeadConfig, seed: int) -> int:
    """The seed of a head's initialisation and batch order."""
    return seed + 1000 * head.init


class Features:
    """The backbone's features of every training image, computed once (frozen backbone)."""

    def __init__(self, start: ModelParams, data: StudyData, *, batch_size: int = 100):
        fn = jax.jit(transfer_features)
        feats, labels = [], []
        for b in data.batches("train", batch_size):
            feats.append(np.asarray(fn(start, b["image"])))
            labels.append(b["label"])
        self.arrays = {"image": np.concatenate(feats), "label": np.concatenate(labels)}

    def batch(self, step: int, *, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """The features of training batch `step` (the very images of `StudyData.train_batch`)."""
        idx = batch_indices(len(self.arrays["label"]), step, batch_size=batch_size, seed=seed)
        return {k: v[idx] for k, v in self.arrays.items()}


def run_record(head: HeadConfig, config: StudyConfig, seed: int, backbone_record: dict) -> dict:
    """What a finished head must match to be reused (JSON)."""
    return as_json({"head": head, "lam": config.lam, "epochs": config.epochs,
                    "batch_size": config.batch_size, "filters": config.filters,
                    "data": config.data, "seed": seed,
                    "backbone": backbone_record.get("path") or backbone_record.get("weights")})  # fmt: skip


def train_head(
    run_dir: Path,
    head: HeadConfig,
    start: ModelParams,
    data: StudyData,
    config: StudyConfig,
    seed: int,
    *,
    backbone_record: dict,
    features: Features | Callable[[], Features] | None = None,
    progress: bool = True,
) -> tuple[ModelParams, dict]:
    """Trains (or loads) one head; returns the whole `TransferNet` and the run's record.

    Args:
      run_dir: the head's directory (checkpoints, model, run.json).
      head: which loss and learning rate.
      start: `start_model(...)` for this head.
      data: the images.
      config: the study.
      seed: the study seed.
      backbone_record: the backbone's record (its path enters the run's identity).
      features: the training images' features (or a function computing them on
        first use), for heads whose loss needs no input-level map; None: the
        whole model every step.
      progress: progress bar.

    Returns:
      (params, record): record has "config", "seconds", "on_features", "steps",
      "history" (one dict of aux values per step).

    Raises:
      ValueError: `run_dir` holds a head of another configuration.
    """
    run_dir = Path(run_dir)
    meta, model_dir = run_dir / "run.json", run_dir / "model"
    identity = run_record(head, config, seed, backbone_record)
    if meta.exists():
        record = json.loads(meta.read_text())
        if record["config"] != identity:
            raise ValueError(
                f"{run_dir} holds a head trained with {record['config']}, not {identity}; "
                "use another work directory or remove it"
            )
        return jaxsal.load(model_dir).with_conv(start.spec.conv), record
    on_features = features is not None and head.method != "guided_gradcam"
    order = head_seed(head, seed)
    bs = config.batch_size
    if on_features:
        feats = features() if callable(features) else features
        model = transfer_head(start)
        batch_fn = functools.partial(feats.batch, batch_size=bs, seed=order)
    else:
        model = start
        batch_fn = functools.partial(data.train_batch, batch_size=bs, seed=order)
    steps = config.epochs * data.steps_per_epoch(bs)
    loss = functools.partial(trust_loss, config=head.loss(config.lam))
    t0 = time.perf_counter()
    trained, history = fit(loss, model, batch_fn, tx=optax.sgd(head.lr), steps=steps,
                           trainable=TRAINABLE, workdir=run_dir, mesh=mesh_for([bs]),
                           checkpoint_every=config.checkpoint_every, config=identity,
                           progress=progress, desc=f"seed {seed} {head.name}")  # fmt: skip
    params = with_head(start, trained) if on_features else trained
    jaxsal.save(model_dir, params, overwrite=True)  # a leftover of a killed run: same identity
    record = {"config": identity, "seconds": time.perf_counter() - t0, "on_features": on_features,
              "steps": steps, "history": history}  # fmt: skip
    write_json(meta, record)
    return params, record
