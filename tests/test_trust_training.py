"""Frozen-layer trustworthy training, 8-device data parallelism, the transfer head, metrics.

- Only the named layer changes; every other parameter is bit-identical after training.
- One step on a mesh of 8 fake CPU devices equals the step on 1 device.
- The MobileNetV2 transfer model carries the backbone's weights and trains its head.
- Macro precision / recall match scikit-learn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import precision_score, recall_score

import jaxsal
from jaxsal.train import classification_metrics, fit, make_mesh, trainable_mask
from jaxsal.trust import TrustConfig, transfer_model, trust_loss


def train_trust(p, batch, *, config, lr, layers, steps, mesh=None):
    loss = functools.partial(trust_loss, config=config)
    return fit(loss, p, lambda step: batch, tx=optax.sgd(lr), steps=steps, trainable=layers,
               mesh=mesh, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    p = jaxsal.init("small_cnn", jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(16, 32, 32, 1)).astype(np.float32),
        "label": rng.integers(0, 10, size=16).astype(np.int32),
    }
    return p, batch


def test_only_the_trained_layer_changes(tiny):
    p, batch = tiny
    before = jax.tree.map(np.array, p.params)
    cfg = TrustConfig(method="gradcam", layer="last_conv", lam=0.5)
    q, hist = train_trust(p, batch, config=cfg, lr=0.5, layers=["features.11"], steps=3)
    assert len(hist) == 3
    mask = trainable_mask(p, ["features.11"]).params
    flat_b, flat_a = jax.tree.leaves(before), jax.tree.leaves(q.params)
    for m, b, a in zip(jax.tree.leaves(mask), flat_b, flat_a):
        if m:
            assert not np.array_equal(b, np.asarray(a))
        else:
            assert np.array_equal(b, np.asarray(a))  # bit-identical
    assert sum(jax.tree.leaves(mask)) == 2  # kernel and bias
    np.testing.assert_array_equal(jax.tree.leaves(p.params)[0], flat_b[0])  # input untouched
    with pytest.raises(ValueError, match="hold no parameters"):
        trainable_mask(p, ["features.12"])


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_eight_devices_equal_one(tiny, method):
    assert len(jax.devices()) == 8
    p, batch = tiny
    p = p.astype(jnp.float64)
    batch = {**batch, "image": batch["image"].astype(np.float64)}
    cfg = TrustConfig(method=method, layer="last_conv", lam=0.5)
    out = {}
    for n in (1, 8):
        mesh = make_mesh(jax.devices()[:n])
        q, hist = train_trust(p, batch, config=cfg, lr=0.5, layers=["features.11", "classifier"],
                              steps=2, mesh=mesh)  # fmt: skip
        out[n] = (jax.tree.map(np.asarray, q.params), hist)
    for a, b in zip(jax.tree.leaves(out[1][0]), jax.tree.leaves(out[8][0])):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    for h1, h8 in zip(out[1][1], out[8][1]):
        for k in h1:
            assert h1[k] == pytest.approx(h8[k], rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="multiple of 8"):
        train_trust(p, {k: v[:12] for k, v in batch.items()}, config=cfg, lr=0.5,
                    layers=["classifier"], steps=1)  # fmt: skip


def random_params(arch):
    """Random weights from the parameter shapes, without compiling `init` (slow for MobileNet)."""
    module = jaxsal.models.build_module(arch, num_classes=1000)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    rng = np.random.default_rng(0)
    leaf = lambda path, s: (  # noqa: E731
        np.ones(s.shape, np.float32) if path[-1].key == "var"
        else (0.05 * rng.normal(size=s.shape)).astype(np.float32))  # fmt: skip
    variables = jax.tree_util.tree_map_with_path(leaf, shapes)
    params = variables.pop("params")
    return jaxsal.ModelParams(module=module, params=params, state=dict(variables))


def test_mobilenet_transfer_head():
    backbone = random_params("mobilenet_v2")
    p = transfer_model(backbone, jax.random.key(1), num_classes=2)
    assert p.params["head.0"]["kernel"].shape == (1, 1, 1280, 256)
    assert p.params["classifier"]["kernel"].shape == (256, 2)
    for a, b in zip(
        jax.tree.leaves(p.params["features"]), jax.tree.leaves(backbone.params["features"])
    ):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(2, 72, 72, 3)).astype(np.float32)
    cfg = TrustConfig(method="gradcam", layer="head", lam=0.9)
    batch = {"image": x, "label": np.array([0, 1], np.int32)}
    q, hist = train_trust(p, batch, config=cfg, lr=0.01, layers=["head", "classifier"], steps=1,
                          mesh=make_mesh(jax.devices()[:1]))  # fmt: skip
    assert np.isfinite(hist[0]["loss"])
    assert not np.array_equal(q.params["head.0"]["kernel"], p.params["head.0"]["kernel"])
    np.testing.assert_array_equal(q.params["features"]["0"]["0"]["kernel"],
                                  p.params["features"]["0"]["0"]["kernel"])  # fmt: skip


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.uniform(size=200) < 0.6, y, rng.integers(0, 4, 200))  # class 4 rare
    got = classification_metrics(y, pred, num_classes=6)  # class 5 absent everywhere
    assert got["accuracy"] == pytest.approx((y == pred).mean())
    kw = {"average": "macro", "zero_division": 0}
    assert got["precision"] == pytest.approx(precision_score(y, pred, **kw))
    assert got["recall"] == pytest.approx(recall_score(y, pred, **kw))
