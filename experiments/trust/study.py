"""The trustworthy-CNN study (Halliwell & Lecue) for several seeds: train heads, score, aggregate.

`run_study(workdir, config)` does, for each seed s = 0 .. seeds-1 in `workdir/seed-s/`:

1. the frozen backbone: the shared base model of seed s (`heads.backbone`,
   cached in `models_dir`, by default `workdir/models`) or converted weights;
2. every head of `config.heads` trained from scratch on it (`heads.train_head`,
   initialisation and batch order of seed s; `heads/NAME/`, resumable);
3. per-image scores on the test split (`evaluate.score_models`), cached in
   `test.npz`: predictions, post hoc Grad-CAM and Guided Grad-CAM maps scored
   against the boxes and against the baseline's maps (SSIM);

then every figure over the seeds (mean, standard deviation over seeds N,
bootstrap 95% interval over the N x n pooled images; paired differences to
the baseline per image) and the report (`report.write`: results JSON,
Markdown, figures), beside earlier ones, never over them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.common import as_json, cached_arrays, flatten, nan_mean, start_study, summarize
from experiments.trust import heads as head_runs
from experiments.trust import report
from experiments.trust.config import StudyConfig
from experiments.trust.data import StudyData, make_data
from experiments.trust.evaluate import score_models
from jaxsal.params import ModelParams
from jaxsal.train import classification_metrics, predict


def slug(name: str) -> str:
    """A directory name for a head."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run_seed(workdir: Path, seed: int, config: StudyConfig, data: StudyData, *, models_dir: Path,
             backbone: ModelParams | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """The heads of one seed, trained or loaded, and their per-image test scores."""
    seed_dir = workdir / f"seed-{seed}"
    if backbone is None:
        backbone, bb_record = head_runs.backbone(config, seed, models_dir=models_dir,
                                                 progress=progress)  # fmt: skip
    else:
        bb_record = {"weights": "given to run_study"}
    log(f"seed {seed}: backbone {json.dumps(as_json(bb_record))[:300]}")
    cache: dict = {}

    def features(start):  # the backbone's features: computed on first use, once per seed
        if "features" not in cache:
            cache["features"] = head_runs.Features(start, data, batch_size=config.eval_batch)
        return cache["features"]

    models, records = {}, {}
    for head in config.heads:
        start = head_runs.start_model(backbone, head, config, seed, data.num_classes)
        feats = functools.partial(features, start) if config.cache_features else None
        params, rec = head_runs.train_head(
            seed_dir / "heads" / slug(head.name), head, start, data, config, seed,
            backbone_record=bb_record, features=feats, progress=progress,
        )  # fmt: skip
        models[head.name], records[head.name] = params, rec
        last = rec["history"][-1] if rec["history"] else {}
        log(f"seed {seed} {head.name}: {rec['steps']} steps in {rec['seconds']:.0f} s"
            f"{' (features)' if rec['on_features'] else ''}, last loss "
            f"{last.get('loss', float('nan')):.4f}, batch accuracy {last.get('accuracy', 0):.3f}")  # fmt: skip

    def compute():
        values = score_models(models, data, "test", methods=config.methods,
                              batch_size=config.eval_batch, examples=config.examples)  # fmt: skip
        if data.has_boxes:  # the base model's own classifier on the same scenes
            values["backbone/prediction"] = predict(backbone, data.split("test")["image"])
        return values

    key = {"heads": [records[h.name]["config"] for h in config.heads], "methods": config.methods,
           "examples": config.examples, "split": "test"}  # fmt: skip
    values = flatten(cached_arrays(seed_dir / "test.npz", key, compute))  # flat "head/score" keys
    keep = ("seconds", "on_features", "steps", "history")
    return {"seed": seed, "backbone": bb_record, "values": values,
            "records": {n: {k: r[k] for k in keep} for n, r in records.items()}}  # fmt: skip


def _paired(seeds, fn) -> dict:
    """summarize() of a per-image quantity `fn(values) -> (N,)` over the seeds."""
    items = [np.asarray(fn(s["values"]), np.float64) for s in seeds]
    return summarize([nan_mean(i) for i in items], items)


def _epoch_means(history: list[dict], key: str, steps_per_epoch: int) -> np.ndarray:
    """The mean of an aux value over each epoch's steps, (epochs,)."""
    v = np.asarray([h[key] for h in history], np.float64)
    return v[: len(v) // steps_per_epoch * steps_per_epoch].reshape(-1, steps_per_epoch).mean(1)


def aggregate(seeds: list[dict], config: StudyConfig, data: StudyData) -> dict:
    """Every figure over the seeds (mean, sd, N, n, bootstrap interval), paired to the baseline."""
    ref = config.heads[0].name
    calibration = [h.name for h in config.heads[1:] if h.method is None]
    spe = data.steps_per_epoch(config.batch_size)
    out: dict = {"seeds": len(seeds), "n": int(len(seeds[0]["values"]["label"])),
                 "reference": ref, "calibration": calibration, "models": {}, "chance": {},
                 "curves": {}}  # fmt: skip

    def correct(name):
        return lambda v: v[f"{name}/prediction"] == v["label"]

    for head in config.heads:
        name = head.name
        cms = [classification_metrics(s["values"]["label"], s["values"][f"{name}/prediction"],
                                      num_classes=data.num_classes) for s in seeds]  # fmt: skip
        e = {"method": head.method, "lr": head.lr, "init": head.init, "use_r1": head.use_r1,
             "use_r2": head.use_r2, "accuracy": _paired(seeds, correct(name)),
             "precision": summarize([c["precision"] for c in cms]),
             "recall": summarize([c["recall"] for c in cms]),
             "train_seconds": summarize([s["records"][name]["seconds"] for s in seeds])}  # fmt: skip
        if name != ref:
            e["delta_accuracy"] = _paired(
                seeds, lambda v, n=name: correct(n)(v).astype(float) - correct(ref)(v)
            )
        for m in config.methods:
            e[f"{m}/mean"] = _paired(seeds, lambda v, k=f"{name}/{m}/mean": v[k])
            if name != ref:
                e[f"{m}/ssim"] = _paired(seeds, lambda v, k=f"{name}/{m}/ssim": v[k])
                if calibration and name not in calibration:
                    cal = f"{calibration[0]}/{m}/ssim"
                    e[f"{m}/ssim_minus_calibration"] = _paired(
                        seeds, lambda v, k=f"{name}/{m}/ssim", c=cal: v[k] - v[c]
                    )
            if data.has_boxes:
                for t in ("pointing", "energy"):
                    e[f"{m}/{t}"] = _paired(seeds, lambda v, k=f"{name}/{m}/{t}": v[k])
                    if name != ref:
                        e[f"{m}/delta_{t}"] = _paired(
                            seeds, lambda v, k=f"{name}/{m}/{t}", r=f"{ref}/{m}/{t}": v[k] - v[r]
                        )
        out["models"][name] = e
        hist = [s["records"][name]["history"] for s in seeds]
        out["curves"][name] = {k: np.mean([_epoch_means(h, k, spe) for h in hist], axis=0).tolist()
                               for k in ("loss", "accuracy")}  # fmt: skip
    out["chance"]["accuracy"] = 1.0 / data.num_classes
    out["chance"]["majority"] = _paired(
        seeds, lambda v: v["label"] == np.bincount(v["label"]).argmax()
    )
    if data.has_boxes:
        for t in ("pointing", "energy"):
            out["chance"][t] = _paired(seeds, lambda v, t=t: v[f"chance/{t}"])
        out["backbone_accuracy"] = _paired(seeds, lambda v: v["backbone/prediction"] == v["label"])
    return out


def run_study(
    workdir: str | Path,
    config: StudyConfig,
    *,
    models_dir: str | Path | None = None,
    backbone: ModelParams | None = None,
    data: StudyData | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs (or resumes) the study in `workdir` and writes its results and report.

    Args:
      workdir: the work directory (resumed; outputs never overwritten).
      config: the study.
      models_dir: cache of the embedded base models (default `workdir/models`;
        share one with the other embedded studies, e.g. runs/models).
      backbone: a backbone to use for every seed instead of `config`'s (tests).
      data: the images (default `make_data(config.data)`).
      progress: progress bars.
      log: where progress lines go.

    Returns:
      The aggregated results, plus "results_path" and "report_path".
    """
    workdir, elapsed = start_study(workdir, config.seeds)
    models_dir = workdir / "models" if models_dir is None else Path(models_dir)
    data = make_data(config.data) if data is None else data
    seeds = [run_seed(workdir, s, config, data, models_dir=models_dir, backbone=backbone,
                      progress=progress, log=log) for s in range(config.seeds)]  # fmt: skip
    results = aggregate(seeds, config, data)
    results["config"] = as_json(config)
    results["backbones"] = [as_json(s["backbone"]) for s in seeds]
    results.update(elapsed())
    results_path, report_path = report.write(workdir, results, seeds[0], data, config)
    log(report.text_tables(results, config))
    log(f"wrote {results_path} and {report_path}")
    return {**results, "results_path": str(results_path), "report_path": str(report_path)}
