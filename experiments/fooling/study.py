"""The fooling study of Heo et al. (2019), run for several seeds: fool, test, aggregate, report.

`run_study(workdir, config)` does, for each seed s = 0 .. seeds-1 in `workdir/seed-s/`:

1. the original model: trained on the embedded scenes with seed s (cached in
   `workdir/models/`, `jaxsal.train.train_or_load`) or loaded from a checkpoint;
2. calibration on validation data (`calibrate`): the class pair of Active
   fooling (chosen once, with seed 0's model) and every test's interval;
3. one fine-tuning per `RunConfig` (`runs.fool`, resumable), seed s;
4. per run, on the test split: Top-1 / Top-5 and every test's per-image
   values with every method of `EvalConfig.methods` (the transfer matrix),
   the original model's values beside them, AOPC curves;
5. the analyses (`analyses`): weight noise, an adversarially trained model,
   SmoothGrad fooling;

then aggregates every figure over the seeds (mean, standard deviation over
seeds, bootstrap 95% interval over the pooled images; `experiments.common.stats`)
and writes `results.json`, `report.md` and `figures/` (`report`), beside
earlier ones, never over them. A rerun resumes: finished pieces are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import jaxsal
from experiments.common import as_json, cached, cached_arrays, start_study, summarize
from experiments.fooling import analyses as study_analyses
from experiments.fooling import calibrate, report, runs
from experiments.fooling.config import ANALYSES, StudyConfig
from experiments.fooling.data import FoolingData, make_data
from jaxsal.params import ModelParams
from jaxsal.train import mesh_for, train_or_load


def original_model(workdir: Path, config: StudyConfig, seed: int, *, progress: bool,
                   models: str | Path | None = None):  # fmt: skip
    """The original model of seed `seed`: from the checkpoint, or trained / loaded from the
    model cache `models` (default `workdir/models`)."""
    import dataclasses

    if config.checkpoint:
        params = jaxsal.load(config.checkpoint).with_conv(config.conv)
        return params, {"checkpoint": str(config.checkpoint)}
    if config.train is None:
        raise ValueError("give StudyConfig.checkpoint or StudyConfig.train for the original model")
    train = dataclasses.replace(config.train, seed=config.train.seed + seed)
    params, record = train_or_load(Path(models or workdir / "models"), train, progress=progress)
    keep = ("path", "cached", "train_seconds", "validation", "test", "epoch_loss")
    return params.with_conv(config.conv), {k: record[k] for k in keep if k in record}


def _mesh(config: StudyConfig):
    sizes = [r.batch_size for r in config.runs] + [
        r.fool_batch for r in config.runs if r.kind == "active"
    ]
    return mesh_for(sizes or [1])


def run_seed(workdir: Path, seed: int, config: StudyConfig, data: FoolingData, classes, *,
             params0: ModelParams | None = None, mesh=None, progress=True,
             log: Callable[[str], None] = print, models: str | Path | None = None) -> dict:  # fmt: skip
    """Everything of one seed (see the module docstring); per-image arrays included."""
    seed_dir = workdir / f"seed-{seed}"
    model: dict = {}
    if params0 is None:
        params0, model = original_model(workdir, config, seed, progress=progress, models=models)
    log(f"seed {seed}: original model {json.dumps(as_json(model))[:300]}")
    ev, bs = config.eval, config.eval.batch_size
    kinds = list(dict.fromkeys(r.kind for r in config.runs))
    original_maps = _OriginalMaps(params0, data, classes, bs)

    def original_values():
        out = {kind: {"validation": {}, "test": {}} for kind in kinds}
        for split in ("validation", "test"):
            for m in ev.methods:
                for kind in kinds:
                    f = _fooling(kind, classes)
                    if kind == "active":
                        o = original_maps.composites(m, split)
                        out[kind][split][m] = runs.active_values(data, f, split, o, o)
                    else:
                        h0 = original_maps.split(m, split)
                        out[kind][split][m] = runs.passive_values(f, m, h0, h0)
        out["accuracy"] = runs.accuracy(params0, data, "test")
        return out

    key = {"data": config.data, "eval": config.eval, "model": model.get("path"), "kinds": kinds,
           "classes": classes}  # fmt: skip
    orig = cached_arrays(seed_dir / "original.npz", key, original_values)
    intervals = {
        kind: {m: {t: (calibrate.interval(kind, t, orig[kind]["validation"][m][t],
                                          ev.calibration_level)
                       if ev.calibrate else runs.paper_interval(kind, t))
                   for t in runs.TESTS[kind]}
               for m in ev.methods}
        for kind in kinds
    }  # fmt: skip
    out: dict[str, Any] = {"seed": seed, "model": model, "classes": classes,
                           "intervals": intervals, "original": orig, "runs": {}}  # fmt: skip
    fooled = {}
    for run in config.runs:
        run_dir = seed_dir / "runs" / run.label
        params, record = runs.fool(run_dir, run, params0, data, config, classes=classes,
                                   seed=seed, mesh=mesh, progress=progress, log=log)  # fmt: skip
        fooling = run.fooling(classes)
        fooled[run.label] = (params, fooling)

        def values(params=params, fooling=fooling):
            vals = {}
            for m in ev.methods:
                if fooling.kind == "active":
                    h = runs.composite_maps(params, data, fooling, m, "test", batch_size=bs)
                    o = original_maps.composites(m, "test")
                    vals[m] = runs.active_values(data, fooling, "test", h, o)
                else:
                    h = runs.split_maps(params, data, fooling, m, "test", batch_size=bs)
                    vals[m] = runs.passive_values(fooling, m, h, original_maps.split(m, "test"))
            return {"methods": vals, "accuracy": runs.accuracy(params, data, "test")}

        vkey = {"run": run, "eval": ev, "record": record["config"]}
        vals = cached_arrays(run_dir / "evaluation.npz", vkey, values)
        entry = {"kind": run.kind, "method": run.method, "lam": run.lam, "lr": run.lr,
                 "steps": run.steps, "batch_size": run.batch_size,
                 "fine_tune_seconds": record["seconds"], "values": vals["methods"],
                 "accuracy": vals["accuracy"],
                 "final": record["history"][-1] if record["history"] else {}}  # fmt: skip
        if ev.aopc_runs == "all" or run.label in ev.aopc_runs:
            entry["aopc"] = cached(run_dir / "aopc.json", {"eval": ev, "run": run},
                                   lambda p=params, f=fooling: runs.aopc(
                                       p, params0, data, f, images=ev.aopc_images,
                                       steps=ev.aopc_steps, seed=seed, batch_size=bs))  # fmt: skip
        out["runs"][run.label] = entry
        log(f"seed {seed} {run.label}: " + _summary(entry, orig, intervals))
    for name in config.analyses:
        fn = getattr(study_analyses, name)
        out[name] = fn(seed_dir, config, params0, data, fooled, classes=classes, seed=seed,
                       mesh=mesh, progress=progress, log=log)  # fmt: skip
    out["fooled"] = fooled
    out["params0"] = params0
    return out


class _OriginalMaps:
    """The original model's maps of every method and split, computed once, on demand."""

    def __init__(self, params0, data, classes, batch_size):
        self.params0, self.data, self.classes, self.bs = params0, data, classes, batch_size
        self.cache: dict = {}

    def split(self, method: str, split: str) -> np.ndarray:
        key = ("split", method, split)
        if key not in self.cache:
            self.cache[key] = runs.split_maps(self.params0, self.data, _fooling("location", None),
                                              method, split, batch_size=self.bs)  # fmt: skip
        return self.cache[key]

    def composites(self, method: str, split: str):
        key = ("composites", method, split)
        if key not in self.cache:
            f = _fooling("active", self.classes)
            self.cache[key] = runs.composite_maps(self.params0, self.data, f, method, split,
                                                  batch_size=self.bs)  # fmt: skip
        return self.cache[key]


def _fooling(kind: str, classes):
    from jaxsal.fooling import Fooling

    return Fooling(kind=kind, method="gradcam", lam=0.0,
                   classes=tuple(classes) if kind == "active" else None)  # fmt: skip


def headline(kind: str) -> str:
    """The test whose FSR is the matched case of a kind (the paper's form)."""
    return {"location": "loss", "topk": "loss", "center_mass": "score",
            "active": "spearman"}[kind]  # fmt: skip


def _summary(entry, orig, intervals) -> str:
    kind, m = entry["kind"], entry["method"]
    t = headline(kind)
    iv = intervals[kind][m][t]
    f = runs.fsr(entry["values"][m][t], iv)
    o = runs.fsr(orig[kind]["test"][m][t], iv)
    return (f"top1 {float(orig['accuracy']['top1']):.3f} -> "
            f"{float(entry['accuracy']['top1']):.3f}; FSR {m} {f:.2f} (original {o:.2f}, "
            f"interval {iv[0]:.3g}..{iv[1]:.3g})")  # fmt: skip


def aggregate(seeds: list[dict], config: StudyConfig) -> dict:
    """Every figure over the seeds: mean, sd, N (seeds), n (images), bootstrap interval."""
    methods = config.eval.methods
    out: dict[str, Any] = {"seeds": len(seeds), "classes": seeds[0]["classes"], "runs": {}}
    out["original"] = {
        "top1": summarize([float(s["original"]["accuracy"]["top1"]) for s in seeds],
                          [s["original"]["accuracy"]["hits"] for s in seeds]),
        "top5": summarize([float(s["original"]["accuracy"]["top5"]) for s in seeds]),
    }  # fmt: skip
    for run in config.runs:
        label, kind = run.label, run.kind
        per = [s["runs"][label] for s in seeds]
        drop = [float(s["original"]["accuracy"]["top1"]) - float(p["accuracy"]["top1"])
                for s, p in zip(seeds, per)]  # fmt: skip
        entry = {"kind": kind, "method": run.method, "lam": run.lam, "lr": run.lr,
                 "steps": run.steps,
                 "top1": summarize([float(p["accuracy"]["top1"]) for p in per],
                                   [p["accuracy"]["hits"] for p in per]),
                 "top5": summarize([float(p["accuracy"]["top5"]) for p in per]),
                 "top1_drop": summarize(drop),
                 "fine_tune_seconds": summarize([p["fine_tune_seconds"] for p in per]),
                 "fsr": {}, "fsr_original": {}, "fsr_paper": {}, "fsr_paper_original": {},
                 "intervals": {}}  # fmt: skip
        for m in methods:
            for t in runs.TESTS[kind]:
                name = f"{m}/{t}"
                ivs = [s["intervals"][kind][m][t] for s in seeds]
                paper = runs.paper_interval(kind, t)
                entry["intervals"][name] = [list(iv) for iv in ivs]
                fooled = [p["values"][m][t] for p in per]
                original = [s["original"][kind]["test"][m][t] for s in seeds]
                for key, values, intervals in (("fsr", fooled, ivs),
                                               ("fsr_original", original, ivs),
                                               ("fsr_paper", fooled, [paper] * len(seeds)),
                                               ("fsr_paper_original", original,
                                                [paper] * len(seeds))):  # fmt: skip
                    hits = [_inside(v, iv) for v, iv in zip(values, intervals)]
                    entry[key][name] = summarize([float(h.mean()) for h in hits], hits)
        if any("aopc" in p for p in per):
            entry["aopc"] = _mean_curves([p["aopc"] for p in per if "aopc" in p])
        out["runs"][label] = entry
    for name in ANALYSES:
        if name in seeds[0]:
            out[name] = [s[name] for s in seeds]
    return out


def _inside(values, interval) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return ((v >= interval[0]) & (v <= interval[1])).astype(np.float64)


def _mean_curves(curves: list[dict]) -> dict:
    return {m: {o: np.mean([c[m][o] for c in curves], axis=0).tolist() for o in curves[0][m]}
            for m in curves[0]}  # fmt: skip


def study_classes(workdir: Path, config: StudyConfig, data: FoolingData, *, progress, log,
                  models: str | Path | None = None):  # fmt: skip
    """The Active classes: the config's, or chosen on validation with seed 0's model (cached)."""
    if config.data.classes is not None or not any(r.kind == "active" for r in config.runs):
        return tuple(config.data.classes or (3, 8))

    def choose():
        params0, _ = original_model(workdir, config, 0, progress=progress, models=models)
        pair, scores = calibrate.choose_classes(params0, data)
        return {"classes": list(pair), "similarity": scores}

    key = {"data": config.data, "train": config.train, "checkpoint": config.checkpoint}
    chosen = cached(workdir / "classes.json", key, choose)
    log(f"active classes {chosen['classes']} (most distinct original maps on validation)")
    return tuple(chosen["classes"])


def run_study(
    workdir: str | Path,
    config: StudyConfig,
    *,
    params0: ModelParams | None = None,
    data: FoolingData | None = None,
    mesh=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    models: str | Path | None = None,
) -> dict:
    """Runs (or resumes) the study in `workdir` and writes its results and report.

    `models` is the cache of the embedded base models (default `workdir/models`),
    shareable between studies.

    Returns:
      The aggregated results written to the results JSON, plus "results_path"
      and "report_path".
    """
    workdir, elapsed = start_study(workdir, config.seeds)
    unknown = set(config.analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    data = make_data(config.data, cache_dir=workdir / "data") if data is None else data
    mesh = _mesh(config) if mesh is None else mesh
    classes = study_classes(workdir, config, data, progress=progress, log=log, models=models)
    seeds = [run_seed(workdir, s, config, data, classes, params0=params0, mesh=mesh,
                      progress=progress, log=log, models=models) for s in range(config.seeds)]  # fmt: skip
    results = aggregate(seeds, config)
    results["config"] = as_json(config)
    results["models"] = [as_json(s["model"]) for s in seeds]
    results.update(elapsed())
    results_path, report_path = report.write(workdir, results, seeds[0], data, config)
    log(report.text_tables(results))
    log(f"wrote {results_path} and {report_path}")
    return {**results, "results_path": str(results_path), "report_path": str(report_path)}
