"""The main job end to end (quick configuration), and its scores on hand-made maps."""

import json

import matplotlib.image
import numpy as np
import pytest

from experiments import saliency_grid
from experiments.job import output_paths
from experiments.main import main
from jaxsal.training import cache_path

NAMES = {
    "simple_grad", "input_x_grad", "smoothgrad", "vargrad", "integrated_gradients",
    "guided_backprop", "deconvnet", "gradcam", "guided_gradcam", "simple_grad_t",
}  # fmt: skip


def test_mass_in_box_by_hand():
    maps = np.zeros((3, 10, 10))
    maps[0] = 1.0  # uniform: the box's area share
    maps[1, 0, 0], maps[1, 3, 4] = 3.0, 1.0  # a quarter inside
    boxes = np.array([[2, 3, 5, 7], [2, 3, 5, 7], [0, 0, 10, 10]])
    np.testing.assert_allclose(saliency_grid.mass_in_box(maps, boxes), [12 / 100, 0.25, 0.0])


def test_pointing_game_by_hand():
    box = np.array([[2, 3, 5, 7]])  # pixel rows 2..4, columns 3..6
    cases = [((4, 6), 0, True), ((5, 6), 0, False), ((5, 6), 1, True), ((6, 8), 2, False),
             ((6, 8), 3, True), ((0, 0), 0, False)]  # fmt: skip
    for (y, x), tol, hit in cases:
        m = np.zeros((1, 10, 10))
        m[0, y, x] = 1.0
        assert saliency_grid.pointing_hits(m, box, tolerance=tol)[0] == hit, (y, x, tol)
    base = saliency_grid.baselines(np.array([[4, 4, 6, 6], [0, 0, 2, 2]]), (10, 10))
    assert base == {"uniform_mass_in_box": pytest.approx(0.04), "centre_pointing": 0.5}


def test_output_paths_never_reuse_a_name(tmp_path):
    assert output_paths(tmp_path) == (tmp_path / "results.json", tmp_path / "saliency_grid.png")
    (tmp_path / "results.json").write_text("{}")
    r, f = output_paths(tmp_path, now=0.0)
    assert (
        r.name.startswith("results-")
        and f.name == r.name.replace("results", "saliency_grid")[:-5] + ".png"
    )
    r.write_text("{}")
    assert output_paths(tmp_path, now=0.0)[0] not in (r, tmp_path / "results.json")


def test_main_job_quick_end_to_end(tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["--workdir", str(workdir), "--quick", "--scenes", "2", "--no-progress"]
    args.append("--no-compile-cache")  # keeps the test process's JAX settings untouched
    first = main(args)
    results = workdir / "results.json"
    figure = workdir / "saliency_grid.png"
    assert results.exists() and figure.exists()
    data = json.loads(results.read_text())
    assert set(data["interpreters"]) == NAMES
    for r in data["interpreters"].values():
        assert 0.0 <= r["mass_in_box"] <= 1.0 and 0.0 <= r["pointing_game"] <= 1.0
        assert r["seconds"] > 0 and r["first_call_seconds"] > 0
    assert 0.0 <= data["test"]["accuracy"] <= 1.0 and data["scenes"]["n"] == 2
    assert not data["model"]["cached"] and not first["model"]["cached"]
    img = matplotlib.image.imread(figure)
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 100  # 2 rows, 11 columns
    out = capsys.readouterr().out
    assert "pointing" in out and "integrated_gradients" in out

    before = results.read_bytes()
    second = main(args)
    assert second["model"]["cached"] and second["model"]["path"] == data["model"]["path"]
    assert results.read_bytes() == before  # the first run's results are kept
    assert second["results_path"] != str(results)
    assert (workdir / second["figure"]).exists() and second["figure"] != figure.name
    # The same model gives the same scores, and one model directory was written.
    assert second["test"] == data["test"]
    assert len(list((workdir / "models").iterdir())) == 1
    assert cache_path(workdir / "models", first_config()).exists()


def first_config():
    from experiments.config import get_config

    return get_config(quick=True).train
