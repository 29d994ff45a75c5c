"""The data-randomisation model: the base architecture fitted to shuffled labels.

Adebayo et al. compare the maps of a model trained on the true labels with those
of the same architecture trained on randomly permuted labels, trained until it
fits them (memorisation; Zhang et al. 2017). A model that never leaves chance is
an untrained model in disguise, so here a small fixed training set (the same
scenes every epoch, no new positions) is memorised: `fit_shuffled` trains with
the one training engine (`jaxsal.train.fit`, BatchNorm in training mode) and
reports the training accuracy in inference mode; `shuffled_model` caches the
result by its configuration, as `jaxsal.train.train_or_load` does for the base
model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import jax
import numpy as np

import jaxsal
from experiments.sanity.config import ShuffledConfig
from jaxsal.data.photo_scenes import photo_scenes
from jaxsal.sanity import shuffled_labels
from jaxsal.train import TrainConfig, classification_loss, evaluate, fit, make_optimizer, mesh_for


def training_scenes(config: ShuffledConfig, train: TrainConfig, seed: int):
    """The fixed training scenes with their labels permuted by `seed`; (scenes, labels)."""
    scenes = photo_scenes("train", size=train.size, seed=config.scene_seed, n=config.n_train)
    return scenes, shuffled_labels(scenes.labels, seed=seed).astype(np.int32)


def fit_shuffled(config: ShuffledConfig, train: TrainConfig, seed: int, *, workdir=None,
                 progress: bool = True) -> tuple[jaxsal.ModelParams, dict]:  # fmt: skip
    """Trains `train.arch` from scratch on shuffled labels; (params, record).

    The record holds the steps, the mean loss and accuracy of the last epoch in
    training mode, the training accuracy in inference mode ("train_accuracy",
    the figure that says whether the labels were memorised), the test accuracy
    on the true labels (chance expected) and the seconds.
    """
    t0 = time.perf_counter()
    scenes, labels = training_scenes(config, train, seed)
    n, bs = len(labels), config.batch_size
    per_epoch = -(-n // bs)
    steps = per_epoch * config.epochs

    def batch(step):
        epoch, i = divmod(step, per_epoch)
        idx = np.random.default_rng((seed, epoch)).permutation(n)[i * bs : (i + 1) * bs]
        return {"image": scenes.images[idx], "label": labels[idx]}

    params = jaxsal.init(train.arch, jax.random.key(10_000 + seed), conv=train.conv)
    tx = make_optimizer(TrainConfig(learning_rate=config.learning_rate,
                                    warmup_steps=config.warmup_steps), steps)  # fmt: skip
    loss = functools.partial(classification_loss, train=True)
    params, history = fit(loss, params, batch, tx=tx, steps=steps, workdir=workdir,
                          mesh=mesh_for([bs, n % bs or 1]), progress=progress,
                          config={"shuffled": dataclasses.asdict(config), "seed": seed},
                          desc="shuffled labels")  # fmt: skip
    last = history[-per_epoch:]
    test = photo_scenes("test", size=train.size, seed=train.seed, n=train.n_eval)
    record = {
        "steps": steps,
        "last_epoch_loss": float(np.mean([h["loss"] for h in last])),
        "last_epoch_batch_accuracy": float(np.mean([h["accuracy"] for h in last])),
        "train_accuracy": evaluate(params, {"image": scenes.images, "label": labels})["accuracy"],
        "true_label_train_accuracy": evaluate(params, scenes)["accuracy"],
        "test_accuracy": evaluate(params, test)["accuracy"],
        "seconds": time.perf_counter() - t0,
    }
    record["fitted"] = record["train_accuracy"] >= config.fit_level
    return params, record


def shuffled_model(cache_dir: str | Path, config: ShuffledConfig, train: TrainConfig, seed: int,
                   *, progress: bool = True) -> tuple[jaxsal.ModelParams, dict]:  # fmt: skip
    """The shuffled-label model of `seed`, from `cache_dir` or trained and stored there.

    Its directory is named by a hash of the configuration; it is written under
    a temporary name and renamed when complete (a killed run resumes from the
    training checkpoints kept beside it, and never leaves a half-written model).
    """
    key = {"shuffled": dataclasses.asdict(config), "arch": train.arch, "size": train.size,
           "conv": train.conv, "seed": seed}  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = (Path(cache_dir) / f"shuffled-{train.arch}-{digest}").absolute()
    meta = path / "shuffled.json"
    if meta.exists():
        record = json.loads(meta.read_text())
        return jaxsal.load(path).with_conv(train.conv), {**record, "cached": True}
    work = path.with_name(path.name + ".training")
    params, record = fit_shuffled(config, train, seed, workdir=work, progress=progress)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    jaxsal.save(tmp, params)
    (tmp / "shuffled.json").write_text(json.dumps({**record, "key": key}, indent=1))
    tmp.rename(path)
    shutil.rmtree(work, ignore_errors=True)
    return params, {**record, "key": key, "cached": False}
