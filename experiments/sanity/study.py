"""The sanity study, run for several seeds: randomise, compare, attack, aggregate, report.

`run_study(workdir, config)` does, for each seed s = 0 .. seeds-1 in `workdir/seed-s/`:

1. the base model of seed s (`experiments.common.base_model`, cached in `workdir/models/`
   or the `models` directory given);
2. model randomisation: every method's maps on the test scenes under the cascading
   and independent randomisations (fresh weights of seed s), and their
   similarity to the trained model's maps, whole image and inside the box;
3. baselines: the trained maps against the next scene's (the floor) and against
   those of base model (s + 1) mod seeds, trained independently (the ceiling;
   with one seed, not computed);
4. data randomisation: the maps of a model fitted to shuffled labels (`shuffled`);
5. the attack of Dombrowski et al., with ReLU and with beta-smoothing (`manipulation`);

every piece stored in `seed-s/` (`experiments.common.cached_arrays`) and reused by a rerun. Then
every figure is aggregated over the seeds (mean, standard deviation over seeds,
bootstrap 95% interval over the pooled scenes; `experiments.common.summarize`)
and `report.write` writes the results JSON, the Markdown report and its figures
beside earlier ones, never over them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from experiments.common import (
    as_json,
    base_model,
    cached_arrays,
    nan_mean,
    start_study,
    summarize,
)
from experiments.sanity import manipulation, randomisation, report
from experiments.sanity.config import SanityConfig
from experiments.sanity.shuffled import shuffled_model
from jaxsal.data.photo_scenes import photo_scenes
from jaxsal.sanity import fresh_params


def test_scenes(config: SanityConfig, n: int | None = None):
    """The study's test scenes (the same for every seed)."""
    n = config.scenes if n is None else n
    return photo_scenes("test", size=config.train.size, seed=config.scene_seed, n=n)


def _model(models: Path, config: SanityConfig, seed: int, progress: bool):
    params, record = base_model(models, seed, config=config.train, conv=config.conv,
                                progress=progress)  # fmt: skip
    keep = ("path", "cached", "train_seconds", "validation", "test")
    return params, {k: record[k] for k in keep if k in record}


def run_seed(workdir: Path, seed: int, config: SanityConfig, *, models: Path | None = None,
             progress: bool = True, log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Every per-scene array of one seed (see the module docstring)."""
    d = workdir / f"seed-{seed}"
    models = workdir / "models" if models is None else Path(models)
    scenes = test_scenes(config)
    x, c, boxes = scenes.images, scenes.labels, scenes.boxes
    params, model = _model(models, config, seed, progress)
    log(f"seed {seed}: base model test accuracy {model['test']['accuracy']:.3f}")
    key = jax.random.key(seed)
    groups = randomisation.layer_groups(params, group_batchnorm=config.group_batchnorm)
    fresh = fresh_params(params, jax.random.fold_in(key, 1))
    other = None
    if config.seeds > 1:
        other, other_record = _model(models, config, (seed + 1) % config.seeds, progress)
    shuffled, shuffled_record = shuffled_model(models, config.shuffled, config.train,
                                               seed, progress=progress)  # fmt: skip
    log(f"seed {seed}: shuffled-label model training accuracy "
        f"{shuffled_record['train_accuracy']:.3f} ({shuffled_record['steps']} steps)")  # fmt: skip
    out = {"seed": seed, "model": model, "groups": groups, "shuffled": shuffled_record,
           "methods": {}, "manipulation": {}}  # fmt: skip
    base_key = {"model": model.get("path"), "scenes": config.scenes, "seed": seed,
                "scene_seed": config.scene_seed, "size": config.train.size}  # fmt: skip
    for name, explain in randomisation.explainers(config).items():
        t0 = time.perf_counter()
        mkey = {**base_key, "method": name, "settings": explain.method.settings,
                "batch": config.batch_size, "groups": groups}  # fmt: skip

        def randomised(explain=explain):
            return randomisation.model_randomisation(
                params, fresh, x, c, boxes, explain, groups=groups, key=key,
                batch_size=config.batch_size, keep=config.figure_scenes)  # fmt: skip

        r = cached_arrays(d / "randomisation" / f"{name}.npz", mkey, randomised)

        def baselines(explain=explain, trained=r["trained"]):
            maps = lambda p: randomisation.maps_of(p, x, c, explain, key=key,  # noqa: E731
                                                   batch_size=config.batch_size)  # fmt: skip
            indep = (randomisation.empty_scores(len(x)) if other is None
                     else randomisation.compare(trained, maps(other), boxes))  # fmt: skip
            shuffled_labels = randomisation.compare(trained, maps(shuffled), boxes)
            return {"other_scene": randomisation.other_scene(trained, boxes),
                    "independent_model": indep, "shuffled_labels": shuffled_labels}  # fmt: skip

        bkey = {**mkey, "other": None if other is None else other_record.get("path"),
                "shuffled": shuffled_record["key"]}  # fmt: skip
        b = cached_arrays(d / "baselines" / f"{name}.npz", bkey, baselines)
        out["methods"][name] = {"cascading": r["cascading"], "independent": r["independent"],
                                "cascade_maps": r["cascade_maps"], **b}  # fmt: skip
        log(f"seed {seed} {name}: fully randomised Spearman abs (box) "
            f"{np.nanmean(r['cascading']['box']['spearman_abs'][-1]):.3f}, other scene "
            f"{np.nanmean(b['other_scene']['box']['spearman_abs']):.3f} "
            f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    mc = config.manipulation
    xa = x[: mc.scenes]
    for name, explain in randomisation.explainers(config, mc.methods).items():
        for setting in manipulation.settings(mc, name):
            akey = {**base_key, "method": name, "settings": explain.method.settings,
                    "setting": setting, "attack": mc.attack, "attacked": mc.scenes,
                    "figure_scenes": mc.figure_scenes}  # fmt: skip

            def attacked(explain=explain, setting=setting):
                k = jax.random.fold_in(key, 2)
                return manipulation.attack(params, xa, explain, setting, mc, key=k,
                                           progress=progress)  # fmt: skip

            a = cached_arrays(d / "manipulation" / f"{name}-{setting}.npz", akey, attacked)
            out["manipulation"].setdefault(name, {})[setting] = a
            log(f"seed {seed} attack {name} {setting}: Spearman to target "
                f"{np.mean(a['untouched']['spearman_target']):.3f} -> "
                f"{np.mean(a['manipulated']['spearman_target']):.3f} "
                f"({float(a['seconds']):.0f} s)")  # fmt: skip
    return out


def _summary(per_seed: list[np.ndarray]) -> dict:
    return summarize([nan_mean(v) for v in per_seed], per_seed)


def _tree(per_seed: list):
    """summarize over seeds of every (n,) leaf of nested dicts, one tree per seed."""
    first = per_seed[0]
    if isinstance(first, dict):
        return {k: _tree([t[k] for t in per_seed]) for k in first}
    if np.ndim(first) == 2:  # (rows, n): one summary per row
        return [_summary([np.asarray(t)[i] for t in per_seed]) for i in range(len(first))]
    return _summary([np.asarray(t) for t in per_seed])


def aggregate(seeds: list[dict], config: SanityConfig) -> dict:
    """Every figure over the seeds: mean, sd, N (seeds), n (scenes), bootstrap interval."""
    out = {"seeds": len(seeds), "groups": seeds[0]["groups"], "methods": {}, "manipulation": {}}
    out["base_model_test_accuracy"] = summarize([s["model"]["test"]["accuracy"] for s in seeds])
    sh = [s["shuffled"] for s in seeds]
    keys = ("train_accuracy", "true_label_train_accuracy", "test_accuracy")
    out["shuffled"] = {k: summarize([r[k] for r in sh]) for k in keys}
    out["shuffled"]["fitted"] = [bool(r["fitted"]) for r in sh]
    out["shuffled"]["steps"] = sh[0]["steps"]
    parts = ("cascading", "independent", "other_scene", "independent_model", "shuffled_labels")
    for name in config.methods:
        out["methods"][name] = {p: _tree([s["methods"][name][p] for s in seeds]) for p in parts}
    for name, by_setting in seeds[0]["manipulation"].items():
        out["manipulation"][name] = {}
        for setting in by_setting:
            runs = [s["manipulation"][name][setting] for s in seeds]
            entry = {k: _tree([r[k] for r in runs]) for k in ("manipulated", "untouched")}
            out["manipulation"][name][setting] = entry
            entry["expl_mse_first"] = float(np.mean([r["expl_mse"][0] for r in runs]))
            entry["expl_mse_last"] = float(np.mean([r["expl_mse"][-1] for r in runs]))
            entry["seconds"] = float(np.mean([float(r["seconds"]) for r in runs]))
    return out


def run_study(workdir: str | Path, config: SanityConfig, *, models: str | Path | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Runs (or resumes) the study in `workdir`, writes results, report and figures.

    Args:
      workdir: the work directory (resumed).
      config: the study.
      models: the model cache (base and shuffled-label models; default `workdir/models`).
      progress: progress bars.
      log: where progress lines go.

    Returns:
      The aggregated results, plus "results_path" and "report_path".
    """
    workdir, elapsed = start_study(workdir, config.seeds)
    unknown = [m for m in config.manipulation.methods if m not in config.methods]
    if unknown:
        raise ValueError(f"attacked methods {unknown} are not among the study's methods "
                         f"{list(config.methods)}")  # fmt: skip
    seeds = [run_seed(workdir, s, config, models=models, progress=progress, log=log)
             for s in range(config.seeds)]  # fmt: skip
    results = aggregate(seeds, config)
    results["config"] = as_json(config)
    results["models"] = [as_json(s["model"]) for s in seeds]
    results["shuffled_models"] = [as_json(s["shuffled"]) for s in seeds]
    results.update(elapsed())
    paths = report.write(workdir, results, seeds[0], test_scenes(config, config.figure_scenes),
                         config)  # fmt: skip
    log(f"wrote {paths[0]} and {paths[1]} ({results['wall_seconds']:.0f} s wall, "
        f"{results['cpu_seconds']:.0f} s CPU)")  # fmt: skip
    return {**results, "results_path": str(paths[0]), "report_path": str(paths[1])}
