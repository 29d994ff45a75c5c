"""The pointing study: every method with every reference on the same scenes, for several seeds.

`run_study(workdir, config)` does, for each seed s = 0 .. seeds-1 in `workdir/seed-s/`:

1. the base model of seed s (`experiments.common.base_model`, cached in the model cache);
2. every method's maps of every explanation (`scenes.explanation_set`), the perturbation
   methods once per reference (black, blur, noise: the same reference image for all of
   them), with explainer seed s, in parts of `config.part` explanations, each part cached
   (`parts/*.npz`), so that a killed run resumes where it stopped;
3. per explanation: the peak under every tie rule (`jaxsal.pointing.peaks`) and whether it
   is within the tolerance of the explained class's box (single digits), inside the
   explained class's or the other class's boxes (composites), the energy in those boxes,
   and the number of tied maxima;

then aggregates every figure over the seeds (mean, standard deviation over seeds, N, n and
a bootstrap 95% interval over the pooled explanations, `experiments.common.summarize`) and
writes the results JSON, the Markdown report and the figures (`report.write`), beside
earlier ones, never over them.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxsal
from experiments.common import (
    EMBEDDED,
    as_json,
    base_model,
    cached_arrays,
    flatten,
    start_study,
    summarize,
)
from experiments.pointing import explain
from experiments.pointing.config import REFERENCED, StudyConfig, scaled
from experiments.pointing.scenes import MEAN, SINGLE, STD, explanation_set
from jaxsal import pointing as pg


def tolerance_of(config: StudyConfig, size: int) -> float:
    """The pointing tolerance in pixels: the config's, or 15 px at 224 px scaled to `size`."""
    return pg.scaled_tolerance(size) if config.tolerance is None else float(config.tolerance)


def score_maps(maps, own, other, *, tolerance: float, ties, seed) -> dict[str, np.ndarray]:
    """Per explanation: hits under every tie rule, box energies and the number of tied maxima.

    Returns:
      "hit/RULE" (peak within `tolerance` of an own box), "in_own/RULE" and "in_other/RULE"
      (peak inside an own / other box), "energy_own", "energy_other", "ties"; each (N,).
    """
    out = {"energy_own": pg.energy_in_boxes(maps, own),
           "energy_other": pg.energy_in_boxes(maps, other), "ties": pg.tie_counts(maps)}  # fmt: skip
    for rule in ties:
        rows, cols = pg.peaks(maps, ties=rule, seed=seed)
        out[f"hit/{rule}"] = pg.hits_at(rows, cols, own, tolerance=tolerance)
        out[f"in_own/{rule}"] = pg.hits_at(rows, cols, own, tolerance=0.0)
        out[f"in_other/{rule}"] = pg.hits_at(rows, cols, other, tolerance=0.0)
    return out


def figure_rows(data: dict, rows: int) -> np.ndarray:
    """The explanations shown in the figures: the first single digits, then composites (a, b)."""
    single = np.flatnonzero(data["kind"] == SINGLE)
    comp = np.flatnonzero(data["kind"] != SINGLE)
    k = rows // 2 if len(comp) else rows
    return np.concatenate([single[: rows - min(k, len(comp))], comp[:k]]).astype(int)


def seed_model(workdir: Path, config: StudyConfig, seed: int, *, cache_dir=None, progress=True):
    """The model of seed `seed`: the config's checkpoint, or the shared base model of that seed."""
    if config.checkpoint:
        return jaxsal.load(config.checkpoint), {"checkpoint": str(config.checkpoint)}
    cache = Path(cache_dir) if cache_dir else workdir / "models"
    params, record = base_model(cache, seed, config=config.train or EMBEDDED, progress=progress)
    keep = ("path", "cached", "train_seconds", "validation", "test")
    return params, {k: record[k] for k in keep if k in record}


def labels_of(config: StudyConfig) -> list[tuple[str, str | None]]:
    """(method, reference) of every map set, the perturbation methods once per reference."""
    return [(m, r) for m in config.methods
            for r in (config.references if m in REFERENCED else (None,))]  # fmt: skip


def label(name: str, ref: str | None) -> str:
    return f"{name}/{ref}" if ref else name


def stable_id(text: str) -> int:
    """A number of a map set's label for its keys and seeds, whichever methods a run has."""
    return zlib.crc32(text.encode()) % 2**31


def _hyper(name: str, ref: str | None, config: StudyConfig, size: int) -> dict:
    if name in ("centre", "random"):
        return {}
    m = explain.table_method(name, config.settings, size, reference=0.0)
    hyper = {k: v for k, v in m.settings.items() if k not in ("reference", "progress", "chunk")}
    return {**hyper, "sigma": config.blur_sigma} if ref == "blur" else hyper


def run_seed(workdir: Path, seed: int, config: StudyConfig, data: dict, *, params=None,
             cache_dir=None, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Every map set's per-explanation scores for one seed (see the module docstring)."""
    seed_dir = workdir / f"seed-{seed}"
    model: dict = {}
    if params is None:
        params, model = seed_model(workdir, config, seed, cache_dir=cache_dir, progress=progress)
    x_all = jnp.asarray(data["x"])
    n, size = len(x_all), x_all.shape[1]
    logits = np.asarray(jaxsal.logits(params, x_all))
    top2 = np.argsort(-logits, axis=1)[:, :2]
    accuracy = {"top1": top2[:, 0] == data["c"], "top2": (top2 == data["c"][:, None]).any(1)}
    tol = tolerance_of(config, size)
    fig = figure_rows(data, config.figure_rows)
    key = jax.random.key(seed)
    values, figure, seconds = {}, {}, {}
    for name, ref in labels_of(config):
        lab, parts = label(name, ref), []
        for p, lo in enumerate(range(0, n, config.part)):
            rows = np.arange(lo, min(lo + config.part, n))

            def compute(rows=rows, p=p, name=name, ref=ref, lab=lab):
                x, c = x_all[rows], jnp.asarray(data["c"][rows])
                k_ref = jax.random.fold_in(jax.random.fold_in(key, 10_000), p)  # one per part
                reference = None
                if ref is not None:
                    reference = explain.reference_image(ref, x, k_ref, mean=MEAN, std=STD,
                                                        sigma=config.blur_sigma)  # fmt: skip
                t0, c0 = time.perf_counter(), time.process_time()
                k_map = jax.random.fold_in(jax.random.fold_in(key, stable_id(lab)), p)
                maps = explain.maps_of(name, params, x, c, key=k_map,
                                       settings=config.settings, reference=reference,
                                       progress=progress)  # fmt: skip
                out = score_maps(maps, data["own"][rows], data["other"][rows], tolerance=tol,
                                 ties=config.ties, seed=(seed, stable_id(lab), p))  # fmt: skip
                keep = np.isin(rows, fig)
                return {**out, "figure_maps": maps[keep], "figure_rows": rows[keep],
                        "seconds": [time.perf_counter() - t0],
                        "cpu_seconds": [time.process_time() - c0]}  # fmt: skip

            part_key = {"method": name, "reference": ref, "hyper": _hyper(name, ref, config, size),
                        "scenes": config.scenes, "rows": [int(rows[0]), int(rows[-1])],
                        "model": model.get("path") or config.checkpoint, "seed": seed,
                        "tolerance": tol, "ties": config.ties, "figure": fig, "keys": "crc32"}  # fmt: skip
            stem = lab.replace("/", "-")
            parts.append(
                flatten(cached_arrays(seed_dir / "parts" / f"{stem}-{p}.npz", part_key, compute))
            )
        merged = {k: np.concatenate([pt[k] for pt in parts]) for k in parts[0]}
        figure[lab] = merged.pop("figure_maps")
        merged.pop("figure_rows")
        seconds[lab] = {"wall": float(merged.pop("seconds").sum()),
                        "cpu": float(merged.pop("cpu_seconds").sum())}  # fmt: skip
        values[lab] = merged
        log(
            f"seed {seed} {lab:<32} {_line(merged, data, config.ties[0])}  "
            f"{seconds[lab]['cpu']:.0f} CPU s"
        )
    return {"seed": seed, "model": model, "values": values, "figure": figure,
            "figure_rows": fig, "seconds": seconds, "accuracy": accuracy, "tolerance": tol}  # fmt: skip


def _line(v: dict, data: dict, rule: str) -> str:
    single = data["kind"] == SINGLE
    parts = []
    if single.any():
        parts.append(f"pointing {v[f'hit/{rule}'][single].mean():.3f} "
                     f"energy {v['energy_own'][single].mean():.3f}")  # fmt: skip
    if (~single).any():
        parts.append(f"own peak {v[f'in_own/{rule}'][~single].mean():.3f} "
                     f"other peak {v[f'in_other/{rule}'][~single].mean():.3f}")  # fmt: skip
    return "; ".join(parts)


def _summary(per_seed_items: list[np.ndarray]) -> dict:
    items = [np.asarray(v, np.float64) for v in per_seed_items]
    return summarize([float(v.mean()) if v.size else float("nan") for v in items], items)


def aggregate(seeds: list[dict], config: StudyConfig, data: dict) -> dict:
    """Every figure over the seeds: mean, sd, N (seeds), n (explanations), bootstrap interval."""
    single = data["kind"] == SINGLE
    comp = ~single
    out: dict[str, Any] = {"seeds": len(seeds), "n_single": int(single.sum()),
                           "n_composite": int(comp.sum()), "methods": {}}  # fmt: skip
    acc = [s["accuracy"] for s in seeds]
    out["accuracy"] = {"single_top1": _summary([a["top1"][single] for a in acc]),
                       "composite_top2": _summary([a["top2"][comp] for a in acc])}  # fmt: skip
    for name, ref in labels_of(config):
        lab = label(name, ref)
        per = [s["values"][lab] for s in seeds]
        e: dict[str, Any] = {"method": name, "reference": ref,
                             "cpu_seconds": summarize([s["seconds"][lab]["cpu"] for s in seeds]),
                             "tied": _summary([v["ties"] > 1 for v in per])}  # fmt: skip
        if single.any():
            for rule in config.ties:
                e[f"pointing/{rule}"] = _summary([v[f"hit/{rule}"][single] for v in per])
                e[f"pointing_0px/{rule}"] = _summary([v[f"in_own/{rule}"][single] for v in per])
            e["energy"] = _summary([v["energy_own"][single] for v in per])
            rule = config.ties[0]  # on the digits the base model classifies correctly
            right = [single & s["accuracy"]["top1"] for s in seeds]
            e[f"pointing_correct/{rule}"] = _summary(
                [v[f"hit/{rule}"][r] for v, r in zip(per, right)]
            )
        if comp.any():
            for rule in config.ties:
                e[f"own_peak/{rule}"] = _summary([v[f"in_own/{rule}"][comp] for v in per])
                e[f"other_peak/{rule}"] = _summary([v[f"in_other/{rule}"][comp] for v in per])
            e["energy_own"] = _summary([v["energy_own"][comp] for v in per])
            e["energy_other"] = _summary([v["energy_other"][comp] for v in per])
            disc = [_discrimination(v["energy_own"][comp], v["energy_other"][comp]) for v in per]
            e["discrimination"] = _summary(disc)
        out["methods"][lab] = e
    return out


def _discrimination(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    both = own + other
    return np.where(both > 0, own / np.where(both > 0, both, 1.0), 0.5)


def run_study(workdir: str | Path, config: StudyConfig, *, cache_dir=None, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Runs (or resumes) the study in `workdir` and writes its results, report and figures.

    Returns:
      The aggregated results (as written to the results JSON) with "paths" added.
    """
    from experiments.pointing import report, voc

    workdir, elapsed = start_study(workdir, config.seeds)
    if config.source == "voc07":
        return voc.run_voc(workdir, config, progress=progress, log=log)
    data = [scenes_of_seed(config, s) for s in range(config.seeds)]
    seeds = [run_seed(workdir, s, config, data[s], cache_dir=cache_dir, progress=progress, log=log)
             for s in range(config.seeds)]  # fmt: skip
    results = aggregate(seeds, config, data[0])
    results.update({
        "config": as_json(config), "models": [as_json(s["model"]) for s in seeds],
        "tolerance_px": seeds[0]["tolerance"], "published_voc07": pg.PUBLISHED,
        "scaled_from_224": {"tolerance": scaled(15, config.scenes.size),
                            "blur_sigma": scaled(10, config.scenes.size)},
        **elapsed(),
    })  # fmt: skip
    paths = report.write(workdir, results, seeds[0], data[0], config)
    log(report.text_tables(results, config))
    log("wrote " + ", ".join(str(p) for p in paths))
    return {**results, "paths": [str(p) for p in paths]}


def scenes_of_seed(config: StudyConfig, seed: int) -> dict:
    """The explanation set of study seed `seed`: scene seed `config.scenes.seed + seed`.

    Every seed explains its own scenes (the same numbers of single digits and composites),
    so the N x n pooled explanations are distinct images.
    """
    return explanation_set(dataclasses.replace(config.scenes, seed=config.scenes.seed + seed))
