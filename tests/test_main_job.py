"""The main job (the fooling study on the embedded default) end to end, quick config, and resume."""

import json

import matplotlib.image
import numpy as np
import pytest

from experiments.common import as_json, output_names, summarize
from experiments.main import main


def test_output_names_never_reuse_a_name(tmp_path):
    names = ("results.json", "report.md", "figures")
    assert output_names(tmp_path, names) == tuple(tmp_path / n for n in names)
    (tmp_path / "report.md").write_text("")
    r, m, f = output_names(tmp_path, names, now=0.0)
    assert (
        r.name.startswith("results-") and m.name == r.name.replace("results", "report")[:-5] + ".md"
    )
    f.mkdir()
    assert output_names(tmp_path, names, now=0.0)[2] not in (f, tmp_path / "figures")


def test_summaries_over_seeds_by_hand():
    s = summarize([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(0.2) and s["N"] == 3
    items = [np.array([1, 0, 1, 1]), np.array([1, 1, 1, 1])]
    s = summarize([0.75, 1.0], items)
    assert s["n"] == 4 and s["ci"][0] <= 0.875 <= s["ci"][1] <= 1.0
    s = summarize([0.5, float("nan"), 0.9])  # NaN seeds are left out of mean and sd
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(0.2 * 2**0.5)


def test_all_nan_figures_are_nan_without_warnings():
    import warnings

    from experiments.common import nan_mean

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would fail here
        assert np.isnan(nan_mean([np.nan, np.nan]))
        s = summarize([float("nan")], [np.full(5, np.nan)])
        assert np.isnan(s["mean"]) and np.isnan(s["sd"]) and np.isnan(s["ci"][0])
        assert summarize([0.4])["mean"] == 0.4 and np.isnan(summarize([0.4])["sd"])


def test_main_job_quick_end_to_end_then_resumed(tmp_path, capsys, float32):
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir), "--quick", "--no-progress", "--no-compile-cache",
            "--analyses", "all"]  # fmt: skip
    main(args)
    data = json.loads((workdir / "results.json").read_text())
    assert set(data["runs"]) == {"location-gradcam", "active-lrp_t"}
    assert len(data["classes"]) == 2  # chosen on validation composites
    for name, run in data["runs"].items():
        assert (workdir / "seed-0" / "runs" / name / "checkpoints").is_dir()
        assert 0 <= run["top1"]["mean"] <= run["top5"]["mean"] <= 1
        methods = {k.split("/")[0] for k in run["fsr"]}
        assert methods == {"gradcam", "lrp_t", "simple_grad_t", "lrp"}
        assert all(0 <= v["mean"] <= 1 for v in run["fsr"].values())
    aopc = data["runs"]["location-gradcam"]["aopc"]
    assert set(aopc) == {"original", "fooled"} and len(aopc["fooled"]["random"]) == 5
    (noise,) = data["noise"]
    assert [r["level"] for r in noise["fooled"]] == [0.0, 0.1]
    assert noise["fooled"][0]["top1"] == pytest.approx(
        data["runs"]["location-gradcam"]["top1"]["mean"]
    )
    (adv,) = data["adversarial"]
    assert adv["max_abs_delta"] <= adv["eps"] + 1e-6
    assert {"original", "robust", "robust_fooled"} <= set(adv)
    assert "smoothgrad" in data["smoothgrad"][0]["fooled"]["fsr"]
    report = (workdir / "report.md").read_text()
    for fig in ("aopc", "maps-location-gradcam", "maps-active-lrp_t"):
        assert f"figures/{fig}.png" in report
        assert matplotlib.image.imread(workdir / "figures" / f"{fig}.png").ndim == 3
    assert "FSR gradcam" in capsys.readouterr().out

    # A second invocation loads every finished run and analysis and writes beside the first.
    before = (workdir / "results.json").read_bytes()
    second = main(args)
    assert (workdir / "results.json").read_bytes() == before
    assert second["results_path"] != str(workdir / "results.json")
    for name, run in second["runs"].items():
        assert as_json(run["fsr"]) == data["runs"][name]["fsr"]
    assert len(list((workdir / "models").iterdir())) == 1
