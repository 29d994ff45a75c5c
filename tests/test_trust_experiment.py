"""The trustworthy-CNN study (experiments/trust): smoke runs, resume, the head-only shortcut.

- The embedded study end to end on a tiny config, then resumed (nothing retrained,
  results written beside the first ones), and a head resumed from its checkpoint;
  the learning-rate search on the validation split.
- The cats-vs-dogs transfer configuration's plumbing on `tfds.testing.mock_data`.
- Training the new layers on precomputed features (`transfer_head`) gives the
  loss and gradients of the whole `TransferNet` (BatchNorm backbone), which
  `jaxsal.save` / `load` round-trips.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxsal
from experiments.common import load_config
from experiments.trust import report
from experiments.trust.config import HeadConfig, StudyConfig
from experiments.trust.main import CONFIGS
from experiments.trust.study import run_study
from experiments.trust.tune import tune
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import init_module
from jaxsal.trust import (
    TrustConfig,
    transfer_features,
    transfer_head,
    transfer_model,
    trust_loss,
    with_head,
)

QUICK = f"{CONFIGS / 'embedded.py'}:quick"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """The quick config's base model, trained once for the module's tests."""
    return tmp_path_factory.mktemp("models")


def test_embedded_study_smoke_then_resumed(tmp_path, models_dir):
    config = dataclasses.replace(load_config(QUICK), seeds=1)
    out = run_study(tmp_path / "w", config, models_dir=models_dir, progress=False,
                    log=lambda s: None)  # fmt: skip
    saved = json.loads((tmp_path / "w" / "results.json").read_text())
    names = [h.name for h in config.heads]
    assert list(saved["models"]) == names == ["baseline", "baseline (2nd init)", "trust gradcam",
                                              "trust guided_gradcam"]  # fmt: skip
    assert saved["n"] == config.data.n_test and saved["seeds"] == 1
    for name, e in saved["models"].items():
        assert 0.0 <= e["accuracy"]["mean"] <= 1.0 and e["accuracy"]["N"] == 1
        assert e["accuracy"]["n"] == config.data.n_test
        for m in ("gradcam", "guided_gradcam"):
            assert 0.0 <= e[f"{m}/energy"]["mean"] <= 1.0
            assert (f"{m}/ssim" in e) == (name != "baseline")
        assert len(saved["curves"][name]["loss"]) == config.epochs
    assert "gradcam/ssim_minus_calibration" in saved["models"]["trust gradcam"]
    assert "| baseline |" in (tmp_path / "w" / "report.md").read_text()
    for png in ("loss_curves.png", "maps.png"):
        assert (tmp_path / "w" / "figures" / png).stat().st_size > 0
    runs = tmp_path / "w" / "seed-0" / "heads"
    record = json.loads((runs / "trust_gradcam" / "run.json").read_text())
    assert record["on_features"] and record["steps"] == config.epochs * 4
    assert not json.loads((runs / "trust_guided_gradcam" / "run.json").read_text())["on_features"]
    head = jaxsal.load(runs / "trust_gradcam" / "model")
    assert head.params["head.0"]["kernel"].shape == (1, 1, 64, config.filters)

    # a head killed after its last checkpoint: resumed from the checkpoint, same weights
    before = jaxsal.load(runs / "baseline" / "model")
    history = json.loads((runs / "baseline" / "run.json").read_text())["history"]
    shutil.rmtree(runs / "baseline" / "model")
    (runs / "baseline" / "run.json").unlink()
    again = run_study(tmp_path / "w", config, models_dir=models_dir, progress=False,
                      log=lambda s: None)  # fmt: skip
    assert again["results_path"] != out["results_path"]  # beside the first, never over it
    after = jaxsal.load(runs / "baseline" / "model")
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((runs / "baseline" / "run.json").read_text())["history"] == history
    trained = [again["models"][n]["train_seconds"]["values"] for n in names[1:]]
    assert trained == [out["models"][n]["train_seconds"]["values"] for n in names[1:]]  # loaded
    for name in names:
        assert (
            again["models"][name]["accuracy"]["values"] == out["models"][name]["accuracy"]["values"]
        )
        assert (
            again["models"][name]["gradcam/energy"]["ci"]
            == out["models"][name]["gradcam/energy"]["ci"]
        )
    assert saved == json.loads((tmp_path / "w" / "results.json").read_text())


def test_tune_on_validation(tmp_path, models_dir):
    config = load_config(QUICK)
    out = tune(tmp_path / "t", config, lrs=(0.1, 0.3), losses=("baseline", "gradcam"),
               models_dir=models_dir, progress=False, log=lambda s: None)  # fmt: skip
    assert set(out["best"]) == {"baseline", "gradcam"} and out["n_val"] == config.data.n_val
    assert {r["lr"] for r in out["rows"]} == {0.1, 0.3}
    for r in out["rows"]:
        assert 0.0 <= r["validation_accuracy"] <= 1.0
    again = tune(tmp_path / "t", config, lrs=(0.1, 0.3), losses=("baseline", "gradcam"),
                 models_dir=models_dir, progress=False, log=lambda s: None)  # fmt: skip
    assert again["rows"] == out["rows"]  # heads loaded, not retrained
    assert sorted(p.name[:4] for p in (tmp_path / "t").glob("tune*.json")) == ["tune", "tune"]


def test_tfds_transfer_smoke_on_mock_data(tmp_path):
    """The cats-vs-dogs configuration's plumbing: tiny backbone, whole model every step."""
    config = load_config(f"{CONFIGS / 'cats_vs_dogs.py'}:local")
    assert (config.epochs, config.batch_size, config.lam, config.filters) == (5, 32, 0.9, 256)
    assert not config.cache_features and config.data.name == "cats_vs_dogs"
    data = dataclasses.replace(config.data, image_size=32, num_train=16, num_val=8, num_test=8,
                               train_split="train", val_split="train", test_split="train")  # fmt: skip
    heads = tuple(h for h in config.heads if h.use_r1 and h.use_r2)
    config = dataclasses.replace(config, data=data, epochs=2, batch_size=8, filters=8,
                                 heads=heads, seeds=2, examples=2, eval_batch=4)  # fmt: skip
    backbone = init_module(SmallCNN(in_channels=3), jax.random.key(0))
    with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
        out = run_study(tmp_path / "t", config, backbone=backbone, progress=False,
                        log=lambda s: None)  # fmt: skip
    assert list(out["models"]) == ["baseline", "baseline (2nd init)", "trust gradcam",
                                   "trust guided_gradcam"]  # fmt: skip
    e = out["models"]["trust guided_gradcam"]
    assert e["accuracy"]["N"] == 2 and e["accuracy"]["n"] == 8
    assert "gradcam/ssim" in e and "gradcam/pointing" not in e and "chance" in out
    assert "backbone_accuracy" not in out  # an ImageNet backbone's own classifier: no meaning
    record = json.loads((tmp_path / "t" / "seed-1" / "heads" / "trust_gradcam" / "run.json")
                        .read_text())  # fmt: skip
    assert record["steps"] == 4 and not record["on_features"]
    head = jaxsal.load(tmp_path / "t" / "seed-1" / "heads" / "trust_gradcam" / "model")
    assert head.params["classifier"]["kernel"].shape == (8, 2)
    np.testing.assert_array_equal(head.params["features"]["0"]["kernel"],
                                  backbone.params["features"]["0"]["kernel"])  # fmt: skip


@pytest.mark.parametrize("method", [None, "gradcam"])
def test_head_on_features_equals_whole_model(tmp_path, method):
    backbone = jaxsal.init("small_cnn_bn", jax.random.key(0), dtype=jnp.float64)
    p = transfer_model(backbone, jax.random.key(1), num_classes=10, filters=16)
    assert p.params["features"]["1"]  # the BatchNorm of the backbone is kept
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 1))
    batch = {"image": x, "label": np.array([0, 3, 5, 9])}
    head = transfer_head(p)
    feats = transfer_features(p, x)
    assert feats.shape == (4, 4, 4, 64) and head.in_channels == 64
    loss = functools.partial(trust_loss, config=TrustConfig(method=method, layer="head"))
    (l_full, a_full), g_full = jax.value_and_grad(loss, has_aux=True)(p, batch)
    (l_head, a_head), g_head = jax.value_and_grad(loss, has_aux=True)(
        head, {**batch, "image": feats}
    )
    np.testing.assert_allclose(l_head, l_full, rtol=1e-12)
    for k in ("head.0", "classifier"):
        for a, b in zip(jax.tree.leaves(g_head.params[k]), jax.tree.leaves(g_full.params[k])):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    moved = head.replace(params=jax.tree.map(lambda a: a + 1.0, head.params))
    back = with_head(p, moved)
    np.testing.assert_array_equal(back.params["head.0"]["kernel"], moved.params["head.0"]["kernel"])
    assert back.params["features"] is p.params["features"]
    jaxsal.save(tmp_path / "m", back)
    loaded = jaxsal.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.apply(x), back.apply(x), rtol=1e-12)
    with pytest.raises(TypeError, match="TransferNet"):
        transfer_head(backbone)


def test_config_checks():
    config = load_config(str(CONFIGS / "embedded.py"))
    assert (config.lam, config.batch_size, config.filters, config.seeds) == (0.9, 32, 256, 3)
    assert config.heads[0].method is None and config.heads[1].init == 1
    assert {h.method for h in config.heads} == {None, "gradcam", "guided_gradcam"}
    assert config.data.size == config.base.size  # the shared base model's scenes
    paper = load_config(str(CONFIGS / "cats_vs_dogs.py"))
    assert (paper.epochs, paper.batch_size, paper.heads[0].lr, paper.lam) == (50, 32, 0.01, 0.9)
    assert len(paper.heads) == 8  # baselines, both methods and their R1 = 0 / R2 = 0 ablations
    with pytest.raises(ValueError, match="baseline"):
        StudyConfig(heads=(HeadConfig("gc", "gradcam", 0.1),))
    with pytest.raises(ValueError, match="lambda"):
        StudyConfig(heads=config.heads, lam=1.5)
    with pytest.raises(ValueError, match="differ"):
        StudyConfig(heads=(config.heads[0], config.heads[0]))


def test_claim_needs_interval_and_every_seed():
    s = {"ci": (0.01, 0.03), "values": [0.02, 0.01, 0.03]}
    assert report.direction(s) == 1
    assert report.direction({**s, "values": [0.02, -0.01, 0.03]}) == 0  # one seed disagrees
    assert report.direction({"ci": (-0.03, -0.01), "values": [-0.02, -0.02]}) == -1
    assert report.direction({"ci": (-0.01, 0.02), "values": [0.01, 0.01]}) == 0
