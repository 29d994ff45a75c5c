"""The optional analyses of the fooling study (`--analyses noise,adversarial,smoothgrad|all`).

Each runs for one seed, takes `(seed_dir, config, params0, data, fooled, ...)`
and returns a JSON-able dict, cached in `seed_dir/analyses/<name>.json`
(keyed by its configuration), so a resumed study does not redo them.

- `noise`: Gaussian noise on the fooled weights of `analysis.noise_run` (and on
  the original's, as control): Top-1 and FSR against the noise level (Heo et
  al. figure 4b): does noise undo the fooling?
- `adversarial`: free adversarial training of the original model (Shafahi et
  al. 2019), then `analysis.adv_run` fooled while keeping robustness
  (cross-entropy on FGSM examples); clean and PGD accuracy and FSR.
- `smoothgrad`: `analysis.smoothgrad_run`, a Location fooling of SmoothGrad,
  and the accuracy it costs (Heo et al. figure 5b).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import optax

import jaxsal
from experiments.common import as_json, cached, write_json
from experiments.fooling import runs
from experiments.fooling.config import RunConfig, StudyConfig
from jaxsal.fooling import adversarial_accuracy, free_adversarial_training, perturb_params


def _dir(seed_dir: Path) -> Path:
    path = Path(seed_dir) / "analyses"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fsr_of(params, params0, data, fooling, methods, batch_size) -> dict:
    """FSR (the kind's headline test, the paper's interval) of each method on the test split."""
    from experiments.fooling.study import headline

    t = headline(fooling.kind)
    out = {}
    for m in methods:
        vals = runs.test_values(params, params0, data, fooling, m, "test", batch_size=batch_size)
        out[m] = runs.fsr(vals[t], runs.paper_interval(fooling.kind, t))
    return out


def noise(seed_dir, config: StudyConfig, params0, data, fooled, *, seed, **_) -> dict:
    """Top-1 and FSR of the fooled and the original model against weight-noise level."""
    a = config.analysis
    if a.noise_run not in fooled:
        raise ValueError(f'noise_run "{a.noise_run}" is not a run of this study: {list(fooled)}')
    params, fooling = fooled[a.noise_run]
    methods = tuple(dict.fromkeys((fooling.method, "gradcam", "lrp_t")))

    def compute():
        out = {"run": a.noise_run}
        for name, p in (("fooled", params), ("original", params0)):
            rows = []
            for level in a.noise_levels:
                noisy = perturb_params(p, float(level), key=jax.random.key(seed))
                acc = runs.accuracy(noisy, data, "test")
                rows.append({"level": float(level), "top1": acc["top1"], "top5": acc["top5"],
                             "fsr": _fsr_of(noisy, params0, data, fooling, methods,
                                            config.eval.batch_size)})  # fmt: skip
            out[name] = rows
        return out

    key = {"levels": a.noise_levels, "eval": config.eval, "seed": seed,
           "run": [r for r in config.runs if r.label == a.noise_run]}  # fmt: skip
    return cached(_dir(seed_dir) / "noise.json", key, compute)


def adversarial(seed_dir, config: StudyConfig, params0, data, fooled, *, classes, seed,
                mesh=None, progress=True, log=print) -> dict:  # fmt: skip
    """Free adversarial training, then fooling the robust model while keeping its robustness."""
    a = config.analysis
    run = a.adv_run or RunConfig("location", "gradcam", lam=10.0, lr=1e-3, steps=150)
    run = dataclasses.replace(run, robust_eps=a.adv_eps, name=f"adv-{run.kind}-{run.method}")
    root = _dir(seed_dir)
    model_dir, done = root / "adv_model", root / "adv_model.json"
    if done.exists():
        robust = jaxsal.load(model_dir, like=params0)
        train_record = json.loads(done.read_text())
        log("adversarially trained model: loaded")
    else:
        train_data = data._train_records(np.arange(data._num_train()))
        robust, train_record = free_adversarial_training(
            params0, train_data, tx=optax.adam(a.adv_lr), eps=a.adv_eps,
            batch_size=a.adv_batch, steps=a.adv_steps, replays=a.adv_replays, seed=seed,
            workdir=root / "adv_training", progress=progress,
        )  # fmt: skip
        jaxsal.save(model_dir, robust, overwrite=True)
        train_record = {"max_abs_delta": train_record["max_abs_delta"],
                        "final_loss": train_record["loss"][-1]}  # fmt: skip
        write_json(done, train_record)
    fooling = run.fooling(classes)
    fooled_robust, _ = runs.fool(root / "runs" / run.label, run, robust, data, config,
                                 classes=classes, seed=seed, mesh=mesh, progress=progress,
                                 log=log)  # fmt: skip
    test = data.split("test")

    def compute():
        out = {"eps": a.adv_eps, "replays": a.adv_replays, "steps": a.adv_steps,
               "run": as_json(run), **train_record}  # fmt: skip
        for name, p in (("original", params0), ("robust", robust),
                        ("robust_fooled", fooled_robust)):  # fmt: skip
            acc = runs.accuracy(p, data, "test")
            out[name] = {"top1": acc["top1"], "top5": acc["top5"],
                         "pgd_top1": adversarial_accuracy(p, test, eps=a.adv_eps),
                         "fsr": _fsr_of(p, robust, data, fooling, (fooling.method,),
                                        config.eval.batch_size)}  # fmt: skip
        return out

    key = {"analysis": a, "eval": config.eval, "seed": seed}
    return cached(root / "adversarial.json", key, compute)


def smoothgrad(seed_dir, config: StudyConfig, params0, data, fooled, *, classes, seed,
               mesh=None, progress=True, log=print) -> dict:  # fmt: skip
    """Location fooling of SmoothGrad: FSR and the accuracy it costs."""
    a = config.analysis
    run = a.smoothgrad_run or RunConfig("location", "smoothgrad", lam=10.0, lr=1e-3, steps=100,
                                        samples=4)  # fmt: skip
    root = _dir(seed_dir)
    params, record = runs.fool(root / "runs" / run.label, run, params0, data, config,
                               classes=classes, seed=seed, mesh=mesh, progress=progress,
                               log=log)  # fmt: skip
    fooling = run.fooling(classes)
    methods = ("smoothgrad", "simple_grad", "gradcam")

    def compute():
        out = {"run": as_json(run)}
        for name, p in (("original", params0), ("fooled", params)):
            acc = runs.accuracy(p, data, "test")
            out[name] = {"top1": acc["top1"], "top5": acc["top5"],
                         "fsr": _fsr_of(p, params0, data, fooling, methods,
                                        config.eval.batch_size)}  # fmt: skip
        return out

    return cached(root / "smoothgrad.json", {"run": run, "eval": config.eval, "seed": seed},
                  compute)  # fmt: skip


__all__ = ["adversarial", "noise", "smoothgrad"]
