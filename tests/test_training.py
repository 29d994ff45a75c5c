"""The base-model recipe and its cache, and the supervised pieces, checked with NumPy."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsal
from jaxsal.data import digit_scenes
from jaxsal.train import (
    EpochBatches,
    TrainConfig,
    cache_path,
    classification_loss,
    evaluate,
    fit,
    train_base_model,
    train_or_load,
)

TINY = TrainConfig(size=32, n_train=64, n_eval=20, epochs=1, batch_size=32, warmup_steps=1)


def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_loss_and_metrics_match_numpy():
    params = jaxsal.init("small_cnn", jax.random.key(1))
    s = digit_scenes("validation", size=32, seed=0, n=30)
    z = np.asarray(jaxsal.logits(params, s.images), np.float64)
    ce = -np_log_softmax(z)[np.arange(30), s.labels]
    batch = {"image": jnp.asarray(s.images), "label": jnp.asarray(s.labels)}
    loss, aux = classification_loss(params, batch)
    np.testing.assert_allclose(float(loss), ce.mean(), rtol=1e-5)
    assert float(aux["accuracy"]) == pytest.approx(np.mean(z.argmax(1) == s.labels))
    m = evaluate(params, s, batch_size=7)  # uneven batches
    rank = (z > z[np.arange(30), s.labels][:, None]).sum(axis=1)
    assert m["n"] == 30
    np.testing.assert_allclose(m["loss"], ce.mean(), rtol=1e-5)
    assert m["accuracy"] == pytest.approx(np.mean(rank == 0))
    assert m["top5"] == pytest.approx(np.mean(rank < 5))


def test_a_few_steps_lower_the_loss():
    params = jaxsal.init("small_cnn", jax.random.key(0))
    s = digit_scenes("train", size=32, seed=0, n=32)
    batch = {"image": jnp.asarray(s.images), "label": jnp.asarray(s.labels)}
    before = float(classification_loss(params, batch)[0])
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    trained, history = fit(classification_loss, params, lambda step: s.as_dict(),
                           tx=optax.adam(3e-3), steps=12, mesh=one, progress=False)  # fmt: skip
    losses = [h["loss"] for h in history]
    assert len(losses) == 12 and losses[0] == pytest.approx(before, rel=1e-5)
    after = float(classification_loss(trained, batch)[0])
    assert after < 0.8 * before
    # The input params are left intact (the step donates copies).
    assert float(classification_loss(params, batch)[0]) == pytest.approx(before, rel=1e-6)


def test_training_batches_reposition_the_same_digits_every_epoch():
    for reposition in (True, False):
        config = dataclasses.replace(TINY, epochs=2, reposition=reposition)
        batches = EpochBatches(config)
        per_epoch = batches.steps_per_epoch
        out = [batches(step) for step in range(2 * per_epoch)]
        assert per_epoch == 2 and len(out) == 4
        epochs = [
            {k: np.concatenate([b[k] for b in out[i : i + 2]]) for k in out[0]} for i in (0, 2)
        ]
        for e in epochs:
            np.testing.assert_array_equal(np.sort(e["label"]), np.sort(epochs[0]["label"]))
            assert len(e["label"]) == 64
        same_scenes = sorted(map(tuple, epochs[0]["box"])) == sorted(map(tuple, epochs[1]["box"]))
        assert len(epochs[0]["box"]) == 64
        assert same_scenes != reposition


def test_cache_reloads_the_same_model_and_keys_by_config(tmp_path):
    p1, r1 = train_or_load(tmp_path, TINY, progress=False)
    assert not r1["cached"] and 0.0 <= r1["test"]["accuracy"] <= 1.0
    p2, r2 = train_or_load(tmp_path, TINY, progress=False)
    assert r2["cached"] and r2["path"] == r1["path"]
    leaves1, leaves2 = jax.tree.leaves(p1.params), jax.tree.leaves(p2.params)
    assert len(leaves1) == len(leaves2) > 0
    for a, b in zip(leaves1, leaves2):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Another configuration trains another model, in another directory.
    other = dataclasses.replace(TINY, seed=1)
    assert cache_path(tmp_path, other) != cache_path(tmp_path, TINY)
    p3, r3 = train_or_load(tmp_path, other, progress=False)
    assert not r3["cached"]
    assert not np.array_equal(np.asarray(jax.tree.leaves(p3.params)[0]), np.asarray(leaves1[0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [cache_path(tmp_path, TINY).name, cache_path(tmp_path, other).name]
    )


def test_cache_never_reuses_or_overwrites_foreign_directories(tmp_path):
    path = cache_path(tmp_path, TINY)
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by train_or_load"):
        train_or_load(tmp_path, TINY, progress=False)
    assert (path / "notes.txt").read_text() == "mine"
    # A record of a different configuration under this key is refused too.
    wrong = dataclasses.replace(TINY, epochs=2)
    (path / "training.json").write_text(json.dumps({"config": dataclasses.asdict(wrong)}))
    with pytest.raises(ValueError, match="holds a model trained with"):
        train_or_load(tmp_path, TINY, progress=False)


def test_training_runs_with_the_configured_conv_backend():
    # an unknown backend must be refused by the training, not ignored
    with pytest.raises(ValueError, match="unknown conv backend"):
        train_base_model(dataclasses.replace(TINY, conv="cudnn"), progress=False)
    assert cache_path("c", TINY) != cache_path("c", dataclasses.replace(TINY, conv="matmul"))
