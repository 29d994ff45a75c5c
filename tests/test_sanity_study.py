"""The sanity study end to end on a tiny configuration, then resumed from its work directory."""

import dataclasses
import json

import numpy as np

from experiments.sanity.configs.embedded import get_config
from experiments.sanity.main import main
from experiments.sanity.randomisation import group_masks, layer_groups
from experiments.sanity.study import run_study
from jaxsal.sanity import AttackConfig


def tiny():
    config = get_config("quick")
    attack = dataclasses.replace(config.manipulation, methods=("simple_grad",), scenes=2,
                                 attack=AttackConfig(steps=2, chunk=2))  # fmt: skip
    return dataclasses.replace(config, methods=("simple_grad", "gradcam"), scenes=3, seeds=2,
                               manipulation=attack)  # fmt: skip


def test_layer_groups_pair_each_conv_with_its_batchnorm():
    import jax

    import jaxsal

    params = jaxsal.init("small_cnn_bn", jax.random.key(0))
    groups = layer_groups(params)
    assert groups[0] == ["features.0", "features.1"] and groups[-1] == ["classifier"]
    assert len(groups) == 6 and len(layer_groups(params, group_batchnorm=False)) == 11
    cascading, independent = group_masks(groups)
    assert cascading.shape == (7, 11) and independent.shape == (6, 11)
    assert not cascading[0].any() and cascading[-1].all()
    np.testing.assert_array_equal(cascading[2], [0] * 8 + [1] * 3)  # features.15 + .16, classifier
    np.testing.assert_array_equal(independent[1], [0, 0, 1, 1] + [0] * 7)


def test_study_end_to_end_and_resumed(tmp_path, float32):
    config = tiny()
    first = run_study(tmp_path, config, progress=False, log=lambda s: None)
    assert {p.name for p in tmp_path.iterdir()} >= {"results.json", "report.md", "figures",
                                                    "models", "seed-0", "seed-1"}  # fmt: skip
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert figures == {"cascade.png", "cascading.png", "independent.png",
                       "manipulation-simple_grad.png"}  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    grad = results["methods"]["simple_grad"]
    trained = grad["cascading"]["whole"]["spearman_abs"][0]  # the trained maps against themselves
    assert abs(trained["mean"] - 1) < 1e-6 and trained["N"] == 2 and trained["n"] == 3
    assert len(grad["cascading"]["box"]["ssim_abs"]) == 7 and len(grad["independent"]["box"]
                                                                  ["hog_spearman"]) == 6  # fmt: skip
    assert grad["cascading"]["whole"]["spearman_abs"][-1]["mean"] < 0.9
    assert np.isfinite(grad["independent_model"]["box"]["spearman_abs"]["mean"])  # 2 seeds
    assert np.isfinite(grad["shuffled_labels"]["whole"]["ssim_abs"]["mean"])
    assert set(results["manipulation"]["simple_grad"]) == {"relu", "3"}
    untouched = results["manipulation"]["simple_grad"]["relu"]["untouched"]
    assert (
        untouched["pixel_rms"]["mean"] == 0
        and abs(untouched["spearman_original"]["mean"] - 1) < 1e-6
    )
    assert set(results["findings"]["model"]) == {"simple_grad", "gradcam"}
    assert results["findings"]["model"]["simple_grad"]["paper"] == "sensitive"
    assert len(results["shuffled_models"]) == 2 and "train_accuracy" in results["shuffled"]
    report = (tmp_path / "report.md").read_text()
    assert "| Grad-CAM |" in report and "## Findings" in report and "N = 2 seed(s)" in report
    assert "Not measured: it needs two seeds" not in report
    from experiments.sanity.report import text

    one_seed = text({**results, "seeds": 1}, config)  # the independent model needs 2 seeds
    assert "Not measured: it needs two seeds or more" in one_seed

    # Resumed: every stored piece is reused (unchanged on disk), the outputs go beside the old ones.
    pieces = sorted((tmp_path / "seed-0").rglob("*.npz"))
    assert len(pieces) == 2 * 2 + 2  # randomisation and baselines per method, two attacks
    stamps = {p: p.stat().st_mtime_ns for p in pieces}
    second = run_study(tmp_path, config, progress=False, log=lambda s: None)
    assert {p: p.stat().st_mtime_ns for p in pieces} == stamps
    assert second["results_path"] != first["results_path"]
    assert json.loads((tmp_path / "results.json").read_text()) == results  # not overwritten
    again = json.loads(open(second["results_path"]).read())
    assert again["methods"] == results["methods"]


def test_command_line_quick_flag_and_seeds(tmp_path, monkeypatch, float32):
    seen = {}

    def fake(workdir, config, *, models, progress):
        seen.update(workdir=workdir, config=config, models=models, progress=progress)
        return {}

    monkeypatch.setattr("experiments.sanity.main.run_study", fake)
    main(["--workdir", str(tmp_path), "--quick", "--seeds", "2", "--no-progress",
          "--no-compile-cache", "--models", str(tmp_path / "m")])  # fmt: skip
    assert seen["config"].seeds == 2 and seen["config"].train.size == 64
    assert seen["models"] == str(tmp_path / "m") and seen["progress"] is False


def test_documented_configs():
    """The configs behind docs/sanity.md have the sizes the docs state, and a bad name says so."""
    import pytest

    seeds3, attack20, full = get_config("seeds3"), get_config("attack20"), get_config("full")
    assert (seeds3.seeds, seeds3.scenes, seeds3.manipulation.scenes) == (3, 50, 10)
    assert (attack20.seeds, attack20.manipulation.scenes) == (1, 20)
    for c in (seeds3, attack20):
        assert c.manipulation.methods == ("simple_grad",)
        assert c.manipulation.betas == (10.0, 3.0, 1.0)
        assert c.manipulation.attack.steps == 1500  # the paper's
        assert (c.smoothgrad_samples, c.vargrad_samples, c.ig_steps) == (10, 10, 16)
    assert (full.smoothgrad_samples, full.vargrad_samples, full.ig_steps) == (50, 25, 50)
    with pytest.raises(ValueError, match="use default, seeds3, attack20, full or quick"):
        get_config("seeds4")
