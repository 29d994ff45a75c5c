"""The optional analyses of the fooling study (`--analyses noise,adversarial,smoothgrad|all`).

Each takes `(workdir, config, params0, data, fooled, ...)` and returns a JSON-able
dict, cached in `workdir/analyses/<name>.json` (keyed by its configuration), so a
resumed study does not redo them.

- `noise`: Gaussian noise on the fooled weights of `analysis.noise_run` (and on
  the original's, as control): Top-1 / Top-5 and FSR against the noise level
  (Heo et al. figure 4b).
- `adversarial`: free adversarial training of the original model (Shafahi et
  al. 2019), then `analysis.adv_run` fooled while keeping robustness
  (cross-entropy on FGSM examples); clean and PGD accuracy and FSR of both.
- `smoothgrad`: `analysis.smoothgrad_run`, a Location fooling of SmoothGrad;
  the accuracy it costs (Heo et al. figure 5b).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import optax

from experiments.fooling_study import (
    RunConfig,
    StudyConfig,
    _cached,
    _fsr_data,
    as_json,
    evaluate_model,
    fool,
    load_params,
    save_params,
)
from jaxsal.fooling import analysis as fa
from jaxsal.fooling.adversarial import adversarial_accuracy, free_adversarial_training
from jaxsal.training import evaluate


def noise(workdir: Path, config: StudyConfig, params0, data, fooled, **_) -> dict:
    """Accuracy and FSR of the fooled and the original model against weight-noise level."""
    a = config.analysis
    if a.noise_run not in fooled:
        raise ValueError(f'noise_run "{a.noise_run}" is not a run of this study: {list(fooled)}')
    params, fooling = fooled[a.noise_run]
    fsr_data = _fsr_data(data, fooling)
    methods = tuple(dict.fromkeys((fooling.method,) + ("gradcam", "lrp_t")))

    def ev(p):
        m = evaluate(p, data.test())
        return {"top1": m["accuracy"], "top5": m["top5"]}

    def compute():
        out = {"run": a.noise_run}
        for name, p in (("fooled", params), ("original", params0)):
            out[name] = fa.noise_robustness(
                p, params0, fsr_data, fooling, levels=a.noise_levels,
                key=jax.random.key(config.seed), evaluate=ev, methods=methods,
                batch_size=config.eval.batch_size,
            )  # fmt: skip
        return out

    key = {"analysis": a.noise_run, "levels": a.noise_levels, "eval": config.eval,
           "run": [r for r in config.runs if r.label == a.noise_run]}  # fmt: skip
    return _cached(_dir(workdir) / "noise.json", key, compute)


def adversarial(workdir: Path, config: StudyConfig, params0, data, fooled, *, mesh=None,
                progress=True, log=print) -> dict:  # fmt: skip
    """Free adversarial training, then fooling the robust model while keeping its robustness."""
    a = config.analysis
    run = a.adv_run or RunConfig("location", "gradcam", lam=10.0, lr=1e-3, steps=150)
    run = dataclasses.replace(run, robust_eps=a.adv_eps, name=f"adv-{run.kind}-{run.method}")
    root = _dir(workdir)
    model_dir = root / "adv_model"
    if (model_dir / "done").exists():
        robust = load_params(model_dir, params0)
        log("adversarially trained model: loaded")
        train_record = json.loads((model_dir / "done").read_text())
    else:

        def batches():
            for step in range(a.adv_steps):
                yield data.train_batch(step, batch_size=a.adv_batch)

        robust, train_record = free_adversarial_training(
            params0, batches(), tx=optax.adam(a.adv_lr), eps=a.adv_eps, replays=a.adv_replays,
            steps=a.adv_steps, progress=progress,
        )  # fmt: skip
        robust = jax.tree.map(np.asarray, robust)
        save_params(model_dir, robust)
        (model_dir / "done").write_text(json.dumps(as_json(train_record)))
    test = data.test()
    fooling = run.fooling(config.data.classes)
    fooled_robust, record = fool(root / "runs" / run.label, run, robust, data, config, mesh=mesh,
                                 progress=progress, log=log)  # fmt: skip

    def compute():
        out = {"eps": a.adv_eps, "replays": a.adv_replays, "steps": a.adv_steps,
               "run": as_json(run), "max_abs_delta": train_record.get("max_abs_delta")}  # fmt: skip
        for name, p in (
            ("original", params0),
            ("robust", robust),
            ("robust_fooled", fooled_robust),
        ):
            ev = evaluate_model(p, robust, data, fooling, config)
            ev["adv_top1"] = adversarial_accuracy(p, test, eps=a.adv_eps)
            out[name] = ev
        return out

    key = {"analysis": dataclasses.asdict(a), "eval": config.eval}
    return _cached(root / "adversarial.json", key, compute)


def smoothgrad(workdir: Path, config: StudyConfig, params0, data, fooled, *, mesh=None,
               progress=True, log=print) -> dict:  # fmt: skip
    """Location fooling of SmoothGrad: FSR and the accuracy it costs."""
    a = config.analysis
    run = a.smoothgrad_run or RunConfig("location", "smoothgrad", lam=10.0, lr=1e-3, steps=100,
                                        samples=4)  # fmt: skip
    root = _dir(workdir)
    params, record = fool(root / "runs" / run.label, run, params0, data, config, mesh=mesh,
                          progress=progress, log=log)  # fmt: skip
    fooling = run.fooling(config.data.classes)
    methods = ("smoothgrad", "simple_grad", "gradcam")
    cfg = dataclasses.replace(config, eval=dataclasses.replace(config.eval, methods=methods))

    def compute():
        return {
            "run": as_json(run),
            "fooled": evaluate_model(params, params0, data, fooling, cfg),
            "original": evaluate_model(params0, params0, data, fooling, cfg),
            "history": [
                {k: h[k] for k in ("ce", "penalty", "accuracy") if k in h}
                for h in record["history"]
            ],  # fmt: skip
        }

    return _cached(root / "smoothgrad.json", {"run": run, "eval": cfg.eval}, compute)


def _dir(workdir: Path) -> Path:
    path = Path(workdir) / "analyses"
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["adversarial", "noise", "smoothgrad"]
