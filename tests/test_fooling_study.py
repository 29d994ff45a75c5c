"""The fooling study on TFDS mock data with a tiny model; resume of an interrupted run; configs."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.configs import load_config
from experiments.fooling import parse_analyses
from experiments.fooling_data import DataConfig
from experiments.fooling_study import EvalConfig, RunConfig, StudyConfig, load_params, run_study
from jaxsal.fooling.trainer import make_mesh
from jaxsal.models import SmallCNN
from jaxsal.params import init_module

MOCK = tfds.testing.MockPolicy.USE_CODE


def two_classes(name, split):
    """Two classes with at least 3 mock records each (mock labels are random)."""
    from jaxsal.data import tfds_images

    values, counts = np.unique(tfds_images.labels_of(tfds_images.source(name, split)),
                               return_counts=True)  # fmt: skip
    return tuple(int(v) for v in values[counts >= 3][:2])


def tiny_study(classes):
    data = DataConfig(source="tfds", name="mnist", train_split="train", test_split="test",
                      image_size=32, n_test=6, classes=classes, n_fool_train=4,
                      n_fool_test=3)  # fmt: skip
    runs = (RunConfig("location", "gradcam", lam=1.0, lr=1e-3, steps=2, batch_size=4),
            RunConfig("active", "lrp_t", lam=1.0, lr=1e-3, steps=2, batch_size=2, fool_batch=2))  # fmt: skip
    ev = EvalConfig(methods=("gradcam", "lrp_t"), batch_size=8, aopc_runs=("location-gradcam",),
                    aopc_images=2, aopc_steps=3, sample_images=2)  # fmt: skip
    return StudyConfig(data=data, train=None, runs=runs, eval=ev, checkpoint_every=1)


def test_study_on_mock_tfds_and_resume(tmp_path):
    params0 = init_module(SmallCNN(num_classes=10, in_channels=3, widths=(4, "M", 8, 8)),
                          jax.random.key(0))  # fmt: skip
    kw = dict(params0=params0, mesh=make_mesh(jax.devices()[:1]), progress=False,
              log=lambda s: None)  # fmt: skip
    with tfds.testing.mock_data(num_examples=40, policy=MOCK):
        config = tiny_study(two_classes("mnist", "test"))
        first = run_study(tmp_path, config, **kw)
        assert set(first["runs"]) == {"location-gradcam", "active-lrp_t"}
        for run in first["runs"].values():
            assert not run["cached"] and 0 <= run["fooled"]["top1"] <= 1
            assert set(run["fooled"]["fsr"]) == {"gradcam", "lrp_t"}
        curves = first["runs"]["location-gradcam"]["aopc"]
        assert len(curves["original"]["original_map"]) == 4 and curves["fooled"]["random"][0] == 0
        assert (tmp_path / "report.md").exists() and (tmp_path / "figures" / "aopc.png").exists()
        run_dir = tmp_path / "runs" / "location-gradcam"
        history = json.loads((run_dir / "run.json").read_text())["history"]
        fooled = load_params(run_dir / "model", params0)
        # Killed after its last checkpoint, before the run was recorded: it continues from there.
        (run_dir / "run.json").unlink()
        shutil.rmtree(run_dir / "model")
        shutil.rmtree(run_dir / "evaluation.json", ignore_errors=True)
        second = run_study(tmp_path, config, **kw)
        # A different run in the same directory is refused, not overwritten.
        other = dataclasses.replace(config, runs=(dataclasses.replace(config.runs[0], lam=2.0),))
        with pytest.raises(ValueError, match="different run"):
            run_study(tmp_path, other, **kw)
    assert not second["runs"]["location-gradcam"]["cached"]
    assert second["runs"]["active-lrp_t"]["cached"]
    assert json.loads((run_dir / "run.json").read_text())["history"] == history
    again = load_params(run_dir / "model", params0)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(fooled.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert second["results_path"] != first["results_path"]


def test_imagenet_configs_follow_the_paper_table():
    c = load_config("experiments/configs/imagenet.py:resnet50,topk,lrp_t")
    (run,) = c.runs
    assert (run.kind, run.method, run.lr, run.lam, run.batch_size) == (
        "topk",
        "lrp_t",
        4e-7,
        1.5,
        8,
    )
    assert c.data.source == "tfds" and c.data.name == "imagenet2012" and c.train is None
    c = load_config("experiments/configs/imagenet.py:densenet121,active,gradcam")
    (run,) = c.runs
    assert (run.lr, run.lam, run.batch_size, run.fool_batch) == (6e-6, 15.0, 4, 4)
    assert c.data.classes == (386, 555)
    assert (c.data.n_fool_train, c.data.n_fool_test) == (1100, 200)
    local = load_config("experiments/configs/imagenet.py:vgg19,location,gradcam,local")
    assert local.runs[0].steps == 200 and local.runs[0].lr == 1e-6
    with pytest.raises(ValueError, match="unknown case"):
        load_config("experiments/configs/imagenet.py:vgg16,location,gradcam")
    with pytest.raises(FileNotFoundError, match="embedded.py"):
        load_config("nope.py:x")
    assert len(load_config("experiments/configs/embedded.py").runs) == 8


def test_parse_analyses():
    assert parse_analyses("all") == ("noise", "adversarial", "smoothgrad")
    assert parse_analyses("none") == () and parse_analyses(None) == ()
    assert parse_analyses("noise, smoothgrad") == ("noise", "smoothgrad")
    with pytest.raises(SystemExit, match="unknown"):
        parse_analyses("noise,foo")
