"""The pointing study end to end on its quick config (tiny base model, 64 px), then resumed."""

import json

import numpy as np
import pytest

from experiments.common import load_config
from experiments.pointing import explain, tune
from experiments.pointing.config import METHODS, REFERENCED, REFERENCES, ScenesConfig
from experiments.pointing.main import CONFIG, main
from experiments.pointing.scenes import COMPOSITE, SINGLE, explanation_set


def test_explanation_set_rows():
    d = explanation_set(ScenesConfig(size=64, singles=3, composites=3, pairs=((3, 8), (1, 7))))
    assert d["x"].shape == (9, 64, 64, 1) and d["kind"].tolist() == [SINGLE] * 3 + [COMPOSITE] * 6
    comp = d["kind"] == COMPOSITE
    assert d["c"][comp].tolist() == [3, 8, 3, 8, 1, 7]  # each composite for class a, then b
    assert (d["own"][~comp, 1] == 0).all() and (d["other"][~comp] == 0).all()  # padding
    # composites: two boxes per class, and explaining b swaps own and other
    np.testing.assert_array_equal(d["own"][3], d["other"][4])
    assert (d["own"][comp][..., 2] > d["own"][comp][..., 0]).all()


def test_study_end_to_end_then_resumed(tmp_path, monkeypatch, float32):
    argv = ["--quick", "--workdir", str(tmp_path), "--no-progress", "--no-compile-cache"]
    first = main(argv)
    labels = [f"{m}/{r}" if m in REFERENCED else m for m in METHODS
              for r in (REFERENCES if m in REFERENCED else (None,))]  # fmt: skip
    assert list(first["methods"]) == labels
    for e in first["methods"].values():
        for key in (
            "pointing/centroid",
            "pointing/random",
            "pointing/first",
            "energy",
            "own_peak/centroid",
            "other_peak/centroid",
            "discrimination",
        ):
            s = e[key]
            assert s["N"] == 1 and 0.0 <= s["mean"] <= 1.0 and s["ci"][0] <= s["ci"][1]
        assert e["pointing/centroid"]["n"] == 4 and e["own_peak/centroid"]["n"] == 4
    # the centre baseline's peak is the canvas centre, and the random baseline has no ties
    assert first["methods"]["random"]["tied"]["mean"] == 0.0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["seeds"] == 1 and len(results["figures"]) == len(REFERENCES)
    for f in results["figures"]:
        assert (tmp_path / f).stat().st_size > 0
    assert "## Single digits: pointing accuracy" in (tmp_path / "report.md").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished part was recomputed")

    monkeypatch.setattr(explain, "maps_of", refuse)
    again = main(argv)  # every part is loaded; new outputs beside the first ones
    for lab, e in first["methods"].items():
        assert again["methods"][lab]["energy"]["mean"] == pytest.approx(e["energy"]["mean"])
    assert all("results-" in p or "report-" in p or "figures-" in p for p in again["paths"])


def test_tuning_on_validation_records_the_grid(tmp_path, float32):
    config = load_config(f"{CONFIG}:quick")
    scenes = ScenesConfig(split="validation", singles=2, composites=1, pairs=((3, 8),))
    grid = {"dssr_theta": (0.5,), "dssr_lam_small": (0.1, 1.0)}
    record = tune.tune(tmp_path, config, scenes=scenes, grid=grid, progress=False,
                       log=lambda s: None)  # fmt: skip
    assert [r["dssr_lam_small"] for r in record["rows"]] == [0.1, 1.0]
    assert record["chosen"]["dssr_theta"] == 0.5 and (tmp_path / "tuning.json").exists()
    with pytest.raises(ValueError, match="validation"):
        tune.tune(tmp_path, config, scenes=ScenesConfig(split="test"), grid=grid)


def test_documented_dssr_constants_follow_the_validation_rows():
    """The embedded configs hold what the tuning rule picks from the validation rows recorded
    in docs/perturbation.md (pointing score, energy in the box), and the rule's order by hand."""
    rows = [{"dssr_theta": t, "dssr_lam_small": ls, "score": 0.5208, "energy": e}
            for t, ls, e in ((0.25, 0.1, 0.14893), (0.25, 1.0, 0.16600), (0.5, 0.1, 0.14891),
                             (0.5, 1.0, 0.16600), (0.75, 0.1, 0.14870), (0.75, 1.0, 0.16600))]  # fmt: skip
    best = tune.choose(rows)
    for arg in ("default", "full"):
        s = load_config(f"{CONFIG}:{arg}").settings
        assert (s.dssr_theta, s.dssr_lam_small) == (best["dssr_theta"], best["dssr_lam_small"])
    assert (best["dssr_theta"], best["dssr_lam_small"]) == (0.25, 1.0)
    better = dict(rows[0], score=0.6)  # the score decides before the energy
    assert tune.choose([*rows, better]) is better
