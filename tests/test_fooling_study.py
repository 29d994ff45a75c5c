"""The fooling study on TFDS mock data with a tiny model: resume, refusal, configs, calibration."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import jaxsal
from experiments.common import as_json, load_config
from experiments.fooling.calibrate import interval
from experiments.fooling.config import (
    AnalysisConfig,
    DataConfig,
    EvalConfig,
    RunConfig,
    StudyConfig,
)
from experiments.fooling.main import parse_analyses
from experiments.fooling.study import run_study
from jaxsal.models import SmallCNN
from jaxsal.params import init_module
from jaxsal.train import make_mesh

MOCK = tfds.testing.MockPolicy.USE_CODE


def two_classes(name, split):
    """Two classes with at least 3 mock records each (mock labels are random)."""
    from jaxsal.data import tfds_images

    values, counts = np.unique(tfds_images.labels_of(tfds_images.source(name, split)),
                               return_counts=True)  # fmt: skip
    return tuple(int(v) for v in values[counts >= 3][:2])


def tiny_study(classes):
    data = DataConfig(source="tfds", name="mnist", train_split="train", val_split="test",
                      test_split="test", image_size=32, n_val=4, n_test=6, classes=classes,
                      n_fool_train=4, n_fool_val=3, n_fool_test=3)  # fmt: skip
    runs = (RunConfig("location", "gradcam", lam=1.0, lr=1e-3, steps=2, batch_size=4),
            RunConfig("active", "lrp_t", lam=1.0, lr=1e-3, steps=2, batch_size=2, fool_batch=2,
                      keep_logits=0.1))  # fmt: skip
    ev = EvalConfig(methods=("gradcam", "lrp_t"), batch_size=8,
                    aopc_runs=("location-gradcam", "active-lrp_t"),
                    aopc_images=2, aopc_steps=3, sample_images=2)  # fmt: skip
    return StudyConfig(data=data, train=None, runs=runs, eval=ev, checkpoint_every=1)


def test_study_on_mock_tfds_and_resume(tmp_path, float32):
    params0 = init_module(SmallCNN(num_classes=10, in_channels=3, widths=(4, "M", 8, 8)),
                          jax.random.key(0))  # fmt: skip
    kw = dict(params0=params0, mesh=make_mesh(jax.devices()[:1]), progress=False,
              log=lambda s: None)  # fmt: skip
    with tfds.testing.mock_data(num_examples=40, policy=MOCK):
        config = tiny_study(two_classes("mnist", "test"))
        first = run_study(tmp_path, config, **kw)
        assert set(first["runs"]) == {"location-gradcam", "active-lrp_t"}
        for run in first["runs"].values():
            assert 0 <= run["top1"]["mean"] <= 1 and run["top1"]["N"] == 1
            assert {"gradcam/", "lrp_t/"} == {k[: k.index("/") + 1] for k in run["fsr"]}
        act = first["runs"]["active-lrp_t"]["fsr"]
        assert {"lrp_t/spearman", "lrp_t/swap_c1", "lrp_t/swap_c2"} <= set(act)
        for name in ("location-gradcam", "active-lrp_t"):  # AOPC of an Active run: true class
            curves = first["runs"][name]["aopc"]
            assert len(curves["original"]["original_map"]) == 4
            assert curves["fooled"]["random"][0] == 0
        assert (tmp_path / "report.md").exists() and (tmp_path / "figures" / "aopc.png").exists()
        run_dir = tmp_path / "seed-0" / "runs" / "location-gradcam"
        history = json.loads((run_dir / "run.json").read_text())["history"]
        fooled = jaxsal.load(run_dir / "model", like=params0)
        # Killed after its last checkpoint, before the run was recorded: it continues from there.
        (run_dir / "run.json").unlink()
        shutil.rmtree(run_dir / "model")
        second = run_study(tmp_path, config, **kw)
        # A different run in the same directory is refused, not overwritten.
        other = dataclasses.replace(config, runs=(dataclasses.replace(config.runs[0], lam=2.0),))
        with pytest.raises(ValueError, match="different run"):
            run_study(tmp_path, other, **kw)
    assert json.loads((run_dir / "run.json").read_text())["history"] == history
    again = jaxsal.load(run_dir / "model", like=params0)
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(fooled.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert second["results_path"] != first["results_path"]
    for name in first["runs"]:  # NaN (the sd of one seed) compares equal through JSON's null
        assert as_json(second["runs"][name]["fsr"]) == as_json(first["runs"][name]["fsr"])


def test_calibrated_intervals_by_hand():
    """Low-is-fooled tests narrow the upper end, high-is-fooled tests raise the lower end."""
    v = np.arange(1, 101) / 100.0  # 0.01 .. 1.00
    lo, hi = interval("location", "loss", v, 0.05)
    assert lo == 0.0 and hi == pytest.approx(np.quantile(v, 0.05))  # below the paper's 0.2
    assert interval("location", "loss", v + 1.0, 0.05) == (0.0, 0.2)  # never widened
    lo, hi = interval("active", "spearman", v, 0.05)
    assert lo == pytest.approx(np.quantile(v, 0.95)) and hi == 1.0
    assert interval("active", "swap_c1", -v, 0.05) == (1e-9, 1.0)  # the paper-free swap test
    assert interval("center_mass", "score", np.zeros(10), 0.05) == (0.1, 1.0)


def test_configs():
    c = load_config("experiments/fooling/configs/imagenet.py:resnet50,topk,lrp_t")
    (run,) = c.runs
    assert (run.kind, run.method, run.lr, run.lam, run.batch_size) == ("topk", "lrp_t", 4e-7,
                                                                       1.5, 8)  # fmt: skip
    assert c.data.source == "tfds" and c.data.name == "imagenet2012" and c.train is None
    c = load_config("experiments/fooling/configs/imagenet.py:densenet121,active,gradcam")
    (run,) = c.runs
    assert (run.lr, run.lam, run.batch_size, run.fool_batch) == (6e-6, 15.0, 4, 4)
    assert c.data.classes == (386, 555)
    assert (c.data.n_fool_train, c.data.n_fool_test) == (1100, 200)
    local = load_config("experiments/fooling/configs/imagenet.py:vgg19,location,gradcam,local")
    assert local.runs[0].steps == 200 and local.runs[0].lr == 1e-6
    with pytest.raises(ValueError, match="unknown case"):
        load_config("experiments/fooling/configs/imagenet.py:vgg16,location,gradcam")
    with pytest.raises(FileNotFoundError, match="embedded.py"):
        load_config("nope.py:x")
    embedded = load_config("experiments/fooling/configs/embedded.py")
    assert len(embedded.runs) == 8 and embedded.data.scenes == "photo" and embedded.eval.calibrate
    legacy = load_config("experiments/fooling/configs/legacy.py")
    assert legacy.data.scenes == "blank" and not legacy.eval.calibrate


def test_parse_analyses():
    assert parse_analyses("all") == ("noise", "adversarial", "smoothgrad")
    assert parse_analyses("none") == () and parse_analyses(None) == ()
    assert parse_analyses("noise, smoothgrad") == ("noise", "smoothgrad")
    with pytest.raises(SystemExit, match="unknown"):
        parse_analyses("noise,foo")


def test_tuning_choice_by_hand():
    from experiments.fooling.tune import choose

    pts = [{"lam": 0.3, "lr": 5e-4, "fsr": 0.1, "drop": 0.5},
           {"lam": 1.0, "lr": 5e-4, "fsr": 0.4, "drop": 1.4},
           {"lam": 3.0, "lr": 5e-4, "fsr": 0.9, "drop": 6.0}]  # fmt: skip
    assert choose(pts, 1.5)["lam"] == 1.0  # the best FSR within the drop
    assert choose(pts, 0.4)["lam"] == 3.0  # none within: the gentlest of those fooled (>= 0.5)
    both = [*pts, {"lam": 10.0, "lr": 5e-4, "fsr": 0.95, "drop": 9.0}]
    assert choose(both, 0.4)["lam"] == 3.0  # the smaller drop, not the higher FSR
    assert choose(pts[:2], 0.4)["lam"] == 0.3  # none fooled either: the gentlest
    assert choose(pts, 0.4, min_fsr=0.95)["lam"] == 0.3
    tie = [dict(pts[0], fsr=0.0), dict(pts[1], fsr=0.0)]
    assert choose(tie, 1.5)["lam"] == 0.3  # ties: the lower lambda


def test_long_configs_follow_their_validation_grids():
    """The documented long configs hold the lambdas the tuning rule picks from the validation
    grids recorded in docs/fooling.md (FSR, drop in points), and their schedules."""
    from experiments.fooling.tune import choose

    grid_3000 = {  # tune --steps 3000, seed 0, validation: (lambda, lr, FSR, drop)
        "location-gradcam": [(10, 2e-4, 1.0, -0.75), (3, 2e-4, 0.603, 3.85)],
        "location-lrp_t": [(10, 2e-4, 0.6, 3.1), (30, 2e-4, 0.696, 7.15), (3, 2e-4, 0.3745, 3.35),
                           (3, 1e-4, 0.0635, 6.8), (10, 1e-4, 0.384, 4.1),
                           (30, 1e-4, 0.5145, 10.85)],
        "center_mass-gradcam": [(0.3, 2e-4, 0.9985, 6.25), (1, 2e-4, 0.9995, 9.15)],
        "center_mass-lrp_t": [(0.3, 2e-4, 0.9985, 6.45), (1, 2e-4, 1.0, 6.15)],
        "active-gradcam": [(10, 2e-4, 1.0, 4.1), (30, 2e-4, 1.0, 3.6)],
        "active-lrp_t": [(10, 2e-4, 0.0, 5.0), (30, 2e-4, 0.0, 4.85)],
        # fine-tuned on scenes drawn anew every pass (reposition)
        "location-lrp_t-reposition": [(10, 2e-4, 0.39, 2.75), (30, 2e-4, 0.6975, 4.9),
                                      (20, 2e-4, 0.6935, 5.15), (15, 2e-4, 0.68, 8.0)],
        "active-lrp_t-floor-reposition": [(3, 2e-4, 0.152, 2.05), (10, 2e-4, 0.925, 3.2),
                                          (5, 2e-4, 0.665, 2.05)],
    }  # fmt: skip
    long = load_config("experiments/fooling/configs/embedded.py:long")
    assert [r.label for r in long.runs if r.lam] == list(grid_3000)
    for run in long.runs:
        assert (run.lr, run.steps, run.batch_size) == (2e-4, 3000, 16)
        assert run.reposition == run.label.endswith("-reposition")
        assert run.keep_logits == (0.1 if "floor" in run.label else 0.0)
        if not run.lam:  # the controls: fine-tuning alone
            assert run.label in ("control-lam0", "control-lam0-reposition")
            continue
        pts = [
            {"lam": lam, "lr": lr, "fsr": f, "drop": d} for lam, lr, f, d in grid_3000[run.label]
        ]
        assert run.lam == choose(pts, 1.5)["lam"], run.label
    # The fixed-scene floor's grid (superseded by the reposition run): the amended fallback
    # takes the smallest drop among the fooled points, lambda 10, where the first took 3.
    floor = [{"lam": lam, "lr": 2e-4, "fsr": f, "drop": d}
             for lam, f, d in ((3, 0.356, 3.5), (10, 0.966, 6.3), (30, 0.995, 8.65))]  # fmt: skip
    assert choose(floor, 1.5)["lam"] == 10
    topk = load_config("experiments/fooling/configs/embedded.py:topk_long")
    assert [(r.label, r.lam, r.lr, r.steps) for r in topk.runs] == [
        ("topk-gradcam", 1.0, 2e-4, 600),
        ("topk-lrp_t", 1.0, 2e-4, 600),
    ]
    with pytest.raises(ValueError, match="use default, topk_long, long or quick"):
        load_config("experiments/fooling/configs/embedded.py:longer")


def test_active_classes_skip_pairs_with_constant_maps(monkeypatch):
    """A pair whose maps are constant (Spearman undefined) is never chosen; all constant is an
    error naming the fix. Maps by hand: pair (0, 1) constant, (0, 2) opposite, (1, 2) equal."""
    import jax.numpy as jnp

    from experiments.fooling import calibrate

    ramp = jnp.arange(16.0).reshape(1, 4, 4, 1)

    def fake_maps(params, x, c, fooling, *args):  # traced under jit: select with where
        code = x[:, :1, :1, :1]
        sign = jnp.where((code == 2) & (c[:, None, None, None] == 2), -1.0, 1.0)
        return jnp.where(code == 1, 1.0, sign * ramp)  # (0, 1) flat; (0, 2) opposite ranks

    class Data:
        def composites(self, split, pair):
            code = {(0, 1): 1.0, (0, 2): 2.0, (1, 2): 3.0}[pair]
            return {"image": np.full((3, 4, 4, 1), code, np.float32)}

    monkeypatch.setattr(calibrate, "heatmap_of", fake_maps)
    pairs = [(0, 1), (0, 2), (1, 2)]
    pair, scores = calibrate.choose_classes(None, Data(), candidates=pairs, n=3)
    assert pair == (0, 2) and scores["0-2"] == pytest.approx(-1.0)
    assert np.isnan(scores["0-1"]) and scores["1-2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="set DataConfig.classes"):
        calibrate.choose_classes(None, Data(), candidates=[(0, 1)], n=3)


def test_run_keys_made_before_the_logit_floor_still_match():
    """A run's JSON (cache keys, run records) names keep_logits and reposition only when they
    are set, nested too."""
    run = RunConfig("active", "lrp_t", lam=30.0, lr=2e-4, steps=3000)
    written_before = {"kind": "active", "method": "lrp_t", "lam": 30.0, "lr": 2e-4,
                      "steps": 3000, "batch_size": 16, "fool_batch": 8, "samples": 8,
                      "robust_eps": None, "name": None}  # fmt: skip
    assert as_json(run) == written_before
    assert as_json({"runs": [run]}) == {"runs": [written_before]}
    assert as_json(AnalysisConfig(adv_run=run))["adv_run"] == written_before  # in a dataclass
    kept = dataclasses.replace(run, keep_logits=0.1)
    assert as_json(kept) == {**written_before, "keep_logits": 0.1}
    assert kept.fooling((3, 6)).keep_logits == 0.1
    moved = dataclasses.replace(run, reposition=True)
    assert as_json(moved) == {**written_before, "reposition": True}


def test_adversarial_analysis_summary_over_seeds_by_hand():
    """The report's over-seeds table of the adversarial analysis: mean ± sd (ddof 1), N and n."""
    from experiments.fooling.report import analyses_text

    def seed(top1, pgd, fsr):
        parts = {name: {"top1": t, "pgd_top1": p, "fsr": {"gradcam": f}}
                 for name, t, p, f in zip(("original", "robust", "robust_fooled"), top1, pgd, fsr)}  # fmt: skip
        return {"eps": 0.25, "replays": 4, "run": {"kind": "location", "method": "gradcam"},
                **parts}  # fmt: skip

    adv = [seed((0.97, 0.95, 0.94), (0.1, 0.5, 0.45), (0.0, 0.0, 0.9)),
           seed((0.98, 0.96, 0.92), (0.2, 0.6, 0.55), (0.0, 0.1, 0.7))]  # fmt: skip
    text = analyses_text({"adversarial": adv, "config": {"data": {"n_test": 2000}}})
    assert "mean ± sd over N = 2 seeds (n = 2000 test images each)" in text
    # robust_fooled: Top-1 (0.94, 0.92) -> 0.930 ± 0.014; PGD 0.500 ± 0.071; FSR 0.800 ± 0.141
    assert "| robust_fooled | 0.930 ± 0.014 | 0.500 ± 0.071 | gradcam 0.800 ± 0.141 |" in text
    assert "mean ± sd" not in analyses_text({"adversarial": adv[:1]})


def test_reposition_draws_the_training_scenes_anew_every_pass():
    """With reposition, pass 0 is the fixed set and pass 1 is one new draw of the scene
    generator (seed (0, 99, 1)): every training digit once, new images; batches stay a pure
    function of the step; a source of fixed records refuses it."""
    from experiments.fooling.data import FoolingData, make_data
    from jaxsal.data import photo_composites, photo_scenes

    data = make_data(DataConfig(n_fool_train=8))
    kw = dict(batch_size=850, fool_batch=4, classes=(3, 6), seed=0)  # 4 steps per pass

    def one_pass(first, reposition):
        bs = [data.train_batch(s, **kw, reposition=reposition) for s in range(first, first + 4)]
        return {k: np.concatenate([b[k] for b in bs]) for k in ("image", "label")}, bs

    (fixed0, _), (fixed1, _) = one_pass(0, False), one_pass(4, False)
    (rep0, _), (rep1, bs1) = one_pass(0, True), one_pass(4, True)
    np.testing.assert_array_equal(rep0["image"], fixed0["image"])
    rows = lambda a: np.sort(a.reshape(len(a), -1), axis=0)  # noqa: E731 - order-free compare
    np.testing.assert_array_equal(rows(fixed1["image"]), rows(fixed0["image"]))  # the same set
    new = photo_scenes("train", size=64, n=3400, seed=(0, 99, 1))
    np.testing.assert_array_equal(rows(rep1["image"]), rows(new.images))
    assert not np.array_equal(rows(rep1["image"]), rows(fixed0["image"]))
    assert np.bincount(rep1["label"], minlength=10).tolist() == [340] * 10
    again = make_data(DataConfig(n_fool_train=8)).train_batch(5, **kw, reposition=True)
    np.testing.assert_array_equal(again["image"], bs1[1]["image"])
    # Composites: 2 steps per pass of 8; pass 1 (steps 2, 3) comes from seed (0, 99, 1).
    comp = [data.train_batch(s, **kw, reposition=True)["fool_image"] for s in (2, 3)]
    drawn = photo_composites("train", classes=(3, 6), size=64, n=8, seed=(0, 99, 1)).images
    np.testing.assert_array_equal(rows(np.concatenate(comp)), rows(drawn))
    with pytest.raises(ValueError, match="leave RunConfig.reposition False"):
        FoolingData().train_batch(0, batch_size=2, reposition=True)
