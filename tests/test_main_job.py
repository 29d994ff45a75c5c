"""The main job (the fooling study on the embedded default) end to end, quick config, and resume."""

import json

import matplotlib.image
import numpy as np
import pytest

from experiments import saliency_grid
from experiments.fooling_report import output_names
from experiments.main import main


def test_saliency_grid_mass_in_box_by_hand():
    maps = np.zeros((3, 10, 10))
    maps[0] = 1.0  # uniform: the box's area share
    maps[1, 0, 0], maps[1, 3, 4] = 3.0, 1.0  # a quarter inside
    boxes = np.array([[2, 3, 5, 7], [2, 3, 5, 7], [0, 0, 10, 10]])
    np.testing.assert_allclose(saliency_grid.mass_in_box(maps, boxes), [12 / 100, 0.25, 0.0])


def test_saliency_grid_pointing_game_by_hand():
    box = np.array([[2, 3, 5, 7]])  # pixel rows 2..4, columns 3..6
    cases = [((4, 6), 0, True), ((5, 6), 0, False), ((5, 6), 1, True), ((6, 8), 2, False),
             ((6, 8), 3, True), ((0, 0), 0, False)]  # fmt: skip
    for (y, x), tol, hit in cases:
        m = np.zeros((1, 10, 10))
        m[0, y, x] = 1.0
        assert saliency_grid.pointing_hits(m, box, tolerance=tol)[0] == hit, (y, x, tol)
    base = saliency_grid.baselines(np.array([[4, 4, 6, 6], [0, 0, 2, 2]]), (10, 10))
    assert base == {"uniform_mass_in_box": pytest.approx(0.04), "centre_pointing": 0.5}


def test_output_names_never_reuse_a_name(tmp_path):
    assert output_names(tmp_path) == (tmp_path / "results.json", tmp_path / "report.md",
                                      tmp_path / "figures")  # fmt: skip
    (tmp_path / "report.md").write_text("")
    r, m, f = output_names(tmp_path, now=0.0)
    assert (
        r.name.startswith("results-") and m.name == r.name.replace("results", "report")[:-5] + ".md"
    )
    f.mkdir()
    assert output_names(tmp_path, now=0.0)[2] not in (f, tmp_path / "figures")


def test_main_job_quick_end_to_end_then_resumed(tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir), "--quick", "--no-progress", "--no-compile-cache",
            "--analyses", "all"]  # fmt: skip
    main(args)
    data = json.loads((workdir / "results.json").read_text())
    assert set(data["runs"]) == {"location-gradcam", "active-lrp_t"}
    for name, run in data["runs"].items():
        assert not run["cached"]
        assert (workdir / "runs" / name / "checkpoints").is_dir()
        for model in ("fooled", "original"):
            assert 0 <= run[model]["top1"] <= run[model]["top5"] <= 1
            assert set(run[model]["fsr"]) == {"gradcam", "lrp_t", "simple_grad"}
            assert all(0 <= v <= 1 for v in run[model]["fsr"].values())
    assert data["transfer"]["location-gradcam"] == data["runs"]["location-gradcam"]["fooled"]["fsr"]
    aopc = data["runs"]["location-gradcam"]["aopc"]
    assert set(aopc) == {"original", "fooled"} and len(aopc["fooled"]["random"]) == 5
    noise = data["noise"]
    assert [r["level"] for r in noise["fooled"]] == [0.0, 0.1]
    fooled = data["runs"]["location-gradcam"]["fooled"]
    assert noise["fooled"][0]["top1"] == fooled["top1"]  # noise 0: the fooled model itself
    assert noise["fooled"][0]["fsr"]["gradcam"] == fooled["fsr"]["gradcam"]
    adv = data["adversarial"]
    assert adv["max_abs_delta"] <= adv["eps"] + 1e-6
    assert {"original", "robust", "robust_fooled"} <= set(adv)
    assert 0 <= adv["robust_fooled"]["adv_top1"] <= 1
    assert "smoothgrad" in data["smoothgrad"]["fooled"]["fsr"]
    report = (workdir / "report.md").read_text()
    for fig in ("aopc", "history", "noise", "maps-location-gradcam", "maps-active-lrp_t",
                "maps-smoothgrad"):  # fmt: skip
        assert f"figures/{fig}.png" in report
        assert matplotlib.image.imread(workdir / "figures" / f"{fig}.png").ndim == 3
    assert "FSR gradcam" in capsys.readouterr().out

    # A second invocation loads every finished run and analysis and writes beside the first.
    before = (workdir / "results.json").read_bytes()
    second = main(args)
    assert all(r["cached"] for r in second["runs"].values())
    assert (workdir / "results.json").read_bytes() == before
    assert second["results_path"] != str(workdir / "results.json")
    for name, run in second["runs"].items():
        assert run["fooled"] == data["runs"][name]["fooled"]
    assert len(list((workdir / "models").iterdir())) == 1
