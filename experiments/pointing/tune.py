"""DSSR's constants that the paper does not give, chosen on the validation split only.

The paper names a two-stage lambda (a smaller lambda while f(x(1 - m))_c <=
theta) but gives neither theta nor the smaller lambda. `tune` runs DSSR and
DSSR+ with each pair of `GRID` on validation scenes (disjoint digits and
photographs from the test split) with the seed-0 base model and the paper's
U(0, 1) noise reference, and picks the pair with the highest validation
pointing score (single digits: peak within the tolerance of the box;
composites: peak inside the explained class's boxes; both methods pooled),
ties broken by the energy in the box. The record (`tuning.json` in the work
directory) holds every pair's scores; copy the choice into the config file.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.common import output_names, write_json
from experiments.pointing.config import ScenesConfig, StudyConfig
from experiments.pointing.scenes import SINGLE, explanation_set
from experiments.pointing.study import run_seed

GRID = {"dssr_theta": (0.25, 0.5, 0.75), "dssr_lam_small": (0.1, 1.0)}
VALIDATION = ScenesConfig(split="validation", singles=16, composites=4)


def choose(rows: list[dict]) -> dict:
    """The row with the highest validation pointing score, ties broken by the energy in the
    box; among exact ties the first row of the grid's order."""
    return max(rows, key=lambda r: (r["score"], r["energy"]))


def tune(workdir: str | Path, config: StudyConfig, *, scenes: ScenesConfig = VALIDATION,
         grid: dict = GRID, cache_dir=None, progress: bool = True,
         log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Scores every pair of `grid` on validation scenes; returns and writes the record."""
    workdir = Path(workdir)
    scenes = dataclasses.replace(scenes, size=config.scenes.size)
    if scenes.split != "validation":
        raise ValueError(f"tune on the validation split only, got {scenes.split!r}")
    data = explanation_set(scenes)
    single = data["kind"] == SINGLE
    rule = config.ties[0]
    names = list(grid)
    rows = []
    for values in itertools.product(*grid.values()):
        settings = dataclasses.replace(config.settings, **dict(zip(names, values)))
        sub = dataclasses.replace(config, scenes=scenes, settings=settings,
                                  methods=("dssr", "dssr_plus"), references=("noise",))  # fmt: skip
        tag = "-".join(f"{k}={v:g}" for k, v in zip(names, values))
        out = run_seed(workdir / "tuning" / tag, 0, sub, data, cache_dir=cache_dir,
                       progress=progress, log=log)  # fmt: skip
        hits = [np.where(single, v[f"hit/{rule}"], v[f"in_own/{rule}"])
                for v in out["values"].values()]  # fmt: skip
        energy = [v["energy_own"] for v in out["values"].values()]
        rows.append({**dict(zip(names, values)), "score": float(np.mean(hits)),
                     "energy": float(np.mean(energy)),
                     "per_method": {k: float(np.mean(h)) for k, h in zip(out["values"], hits)}})  # fmt: skip
        log(f"tuning {tag}: score {rows[-1]['score']:.3f} energy {rows[-1]['energy']:.3f}")
    best = choose(rows)
    record = {"grid": {k: list(v) for k, v in grid.items()}, "scenes": dataclasses.asdict(scenes),
              "rule": rule, "reference": "noise", "steps": config.settings.steps,
              "criterion": "validation pointing score (then energy), DSSR and DSSR+ pooled",
              "rows": rows, "chosen": {k: best[k] for k in names}}  # fmt: skip
    (path,) = output_names(workdir, ("tuning.json",))
    write_json(path, record)
    log(f"chosen {record['chosen']} (wrote {path})")
    return record
