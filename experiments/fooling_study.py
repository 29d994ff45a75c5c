"""The fooling study of Heo et al. (2019): fine-tune, evaluate, analyse, report; resumable.

`run_study(workdir, config)` does, in `workdir`:

1. the original model: trained on the embedded digit scenes (cached in
   `models/`), loaded from a `jaxsal.save` checkpoint, or passed in;
2. one fine-tuning per `RunConfig` (`CE + lam * L_F`, Adam) with
   `jaxsal.fooling.trainer.fine_tune`: orbax checkpoints in
   `runs/<name>/checkpoints` (an interrupted run continues from there), the
   finished model in `runs/<name>/model` and its history and evaluation in
   `runs/<name>/run.json` (a finished run is loaded, never redone);
3. per run: Top-1 / Top-5 accuracy, FSR with every interpreter of
   `EvalConfig.methods` (the transfer matrix; the original model's FSR as
   the baseline), AOPC curves;
4. the analyses (`experiments.fooling_analyses`): noise robustness,
   adversarially trained model, SmoothGrad fooling;
5. `results.json` (every figure) and `report.md` with PNG figures
   (`experiments.fooling_report`); later invocations write timestamped copies
   beside them, never over them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import jaxsal
from experiments.fooling_data import DataConfig, FoolingData, make_data
from jaxsal.fooling import analysis
from jaxsal.fooling.objective import Fooling, loss
from jaxsal.fooling.trainer import fine_tune, make_mesh
from jaxsal.params import ModelParams
from jaxsal.training import TrainConfig, evaluate, train_or_load

ANALYSES = ("noise", "adversarial", "smoothgrad")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One fooling fine-tuning.

    Attributes:
      kind: "location", "topk", "center_mass" or "active".
      method: the interpreter fooled ("gradcam", "lrp_t", ...; `objective.METHODS`).
      lam: lambda of `CE + lam * L_F`.
      lr: Adam learning rate.
      steps: optimisation steps.
      batch_size: images per step for the cross-entropy (and passive penalties).
      fool_batch: composites per step (active fooling).
      samples: SmoothGrad samples (method "smoothgrad").
      robust_eps: when set, the cross-entropy is taken on FGSM examples of this
        radius (fooling an adversarially trained model while keeping its robustness).
      name: directory name (default "kind-method").
    """

    kind: str
    method: str
    lam: float
    lr: float
    steps: int
    batch_size: int = 8
    fool_batch: int = 4
    samples: int = 8
    robust_eps: float | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The run's directory name."""
        return self.name or f"{self.kind}-{self.method}"

    def fooling(self, classes: tuple[int, int]) -> Fooling:
        """The `Fooling` of this run (classes are used by active fooling only)."""
        return Fooling(kind=self.kind, method=self.method, lam=self.lam, samples=self.samples,
                       classes=tuple(classes) if self.kind == "active" else None)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What is measured on every fooled model.

    Attributes:
      methods: interpreters of the FSR / transfer matrix.
      batch_size: images per evaluation call.
      aopc_runs: runs with AOPC curves ("all", or a tuple of run names; () for none).
      aopc_images: test images of the AOPC curves.
      aopc_steps: patches removed (None: all).
      sample_images: images of the before / after map figures.
      fsr_intervals: override of the FSR intervals, {kind: (lo, hi)}.
    """

    methods: tuple[str, ...] = ("gradcam", "lrp_t", "lrp", "simple_grad", "simple_grad_t")
    batch_size: int = 50
    aopc_runs: str | tuple[str, ...] = "all"
    aopc_images: int = 50
    aopc_steps: int | None = 24
    sample_images: int = 4
    fsr_intervals: tuple[tuple[str, tuple[float, float]], ...] = ()


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """The optional analyses (`StudyConfig.analyses` selects which run).

    Attributes:
      noise_run: run whose weights get Gaussian noise.
      noise_levels: relative noise levels (see `analysis.perturb_params`).
      adv_eps: L-inf radius of free adversarial training (model input units).
      adv_replays: replays m of each minibatch.
      adv_steps: minibatches of free adversarial training.
      adv_lr: its Adam learning rate.
      adv_batch: its batch size.
      adv_run: the fooling of the adversarially trained model.
      smoothgrad_run: the SmoothGrad fooling.
    """

    noise_run: str = "location-lrp_t"
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2)
    adv_eps: float = 1.0
    adv_replays: int = 4
    adv_steps: int = 150
    adv_lr: float = 1e-3
    adv_batch: int = 32
    adv_run: RunConfig | None = None
    smoothgrad_run: RunConfig | None = None


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The whole study.

    Attributes:
      data: the images (`DataConfig`).
      train: training of the original model on the embedded scenes (when no
        checkpoint is given).
      checkpoint: a `jaxsal.save` / `weights_convert` checkpoint of the original model.
      runs: the foolings.
      eval: what is measured.
      analyses: which of `ANALYSES` run.
      analysis: their settings.
      checkpoint_every: fine-tuning checkpoint interval.
      seed: seed of the AOPC / noise draws.
    """

    data: DataConfig = DataConfig()
    train: TrainConfig | None = TrainConfig(noise=0.1)
    checkpoint: str | None = None
    runs: tuple[RunConfig, ...] = ()
    eval: EvalConfig = EvalConfig()
    analyses: tuple[str, ...] = ()
    analysis: AnalysisConfig = AnalysisConfig()
    checkpoint_every: int = 50
    seed: int = 0


def as_json(obj: Any) -> Any:
    """Dataclasses, tuples and NumPy values as JSON-able Python values."""
    if dataclasses.is_dataclass(obj):
        return as_json(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_json(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return as_json(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically (a killed run never leaves a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(as_json(data), indent=1))
    tmp.replace(path)


def original_model(
    workdir: Path, config: StudyConfig, *, progress: bool
) -> tuple[ModelParams, dict]:
    """The original model: from `config.checkpoint`, or trained / loaded from `workdir/models`."""
    if config.checkpoint:
        return jaxsal.load(config.checkpoint), {"checkpoint": str(config.checkpoint)}
    if config.train is None:
        raise ValueError("give StudyConfig.checkpoint or StudyConfig.train for the original model")
    params, record = train_or_load(workdir / "models", config.train, progress=progress)
    return params, {
        k: record[k] for k in ("path", "cached", "train_seconds", "test") if k in record
    }


def _fsr_data(data: FoolingData, fooling: Fooling) -> dict[str, np.ndarray]:
    if fooling.kind == "active":
        return {"fool_image": data.fool_test()}
    return data.test()


def _intervals(config: StudyConfig, fooling: Fooling):
    return dict(config.eval.fsr_intervals).get(fooling.kind)


def evaluate_model(
    params: ModelParams,
    params0: ModelParams,
    data: FoolingData,
    fooling: Fooling,
    config: StudyConfig,
) -> dict:
    """Top-1 / Top-5 accuracy, and FSR and mean test loss with every evaluation interpreter."""
    t0 = time.perf_counter()
    metrics = evaluate(params, data.test())
    losses = analysis.test_losses_by_method(
        params, params0, _fsr_data(data, fooling), fooling,
        methods=config.eval.methods, batch_size=config.eval.batch_size,
    )  # fmt: skip
    return {
        "top1": metrics["accuracy"],
        "top5": metrics["top5"],
        "fsr": analysis.fsr_by_method(losses, fooling, interval=_intervals(config, fooling)),
        "test_loss": {
            m: float(np.nanmean(t)) if np.isfinite(t).any() else None for m, t in losses.items()
        },  # fmt: skip
        "seconds": time.perf_counter() - t0,
    }


def fooling_loss(run: RunConfig, fooling: Fooling) -> Callable:
    """`loss_fn(params, params0, batch)` of a run for the trainer."""
    if run.robust_eps is not None:
        from jaxsal.fooling.adversarial import robust_fooling_loss

        return functools.partial(robust_fooling_loss, fooling=fooling, eps=run.robust_eps)
    return functools.partial(loss, fooling=fooling)


def fool(
    run_dir: Path,
    run: RunConfig,
    params0: ModelParams,
    data: FoolingData,
    config: StudyConfig,
    *,
    mesh=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[ModelParams, dict]:
    """Fine-tunes one fooling in `run_dir`, or loads it when finished.

    Returns:
      (fooled params, record): the record holds the run's config, loss history,
      fine-tuning seconds, and whether it was loaded ("cached").
    """
    record_path, model_path = run_dir / "run.json", run_dir / "model"
    fooling = run.fooling(config.data.classes)
    run_config = {"run": as_json(run), "data": as_json(config.data)}
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record["config"] != run_config:
            raise ValueError(
                f"{run_dir} holds a different run ({record['config']['run']}); use another "
                "workdir or remove that directory to redo it"
            )
        log(f"{run.label}: finished earlier, loaded")
        return load_params(model_path, params0), {**record, "cached": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    fool_batch = run.fool_batch if run.kind == "active" else 0

    def batch_fn(step):
        return data.train_batch(step, batch_size=run.batch_size, fool_batch=fool_batch)

    t0 = time.perf_counter()
    params, history = fine_tune(
        fooling_loss(run, fooling), params0, batch_fn, tx=optax.adam(run.lr), steps=run.steps,
        workdir=run_dir, checkpoint_every=config.checkpoint_every, mesh=mesh,
        config=run_config, progress=progress, desc=run.label,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    params = jax.tree.map(np.asarray, params)
    save_params(model_path, params)
    record = {"config": run_config, "history": history, "seconds": seconds}
    write_json(record_path, record)
    return params, {**record, "cached": False}


def save_params(path: Path, params: ModelParams) -> None:
    """Writes the arrays of `params` (params and state) as an orbax checkpoint at `path`.

    Any architecture works (also unregistered test models); `load_params` needs a
    model of the same structure as template.
    """
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if path.exists():
        shutil.rmtree(path)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, {"params": params.params, "state": params.state})


def load_params(path: Path, like: ModelParams) -> ModelParams:
    """The model saved by `save_params`, with the module and structure of `like`."""
    import orbax.checkpoint as ocp

    if (Path(path) / "jaxsal.json").exists():  # written by jaxsal.save
        return like.replace(**{k: getattr(jaxsal.load(path), k) for k in ("params", "state")})
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                            {"params": like.params, "state": like.state})  # fmt: skip
    with ocp.StandardCheckpointer() as ckpt:
        tree = ckpt.restore(Path(path).absolute(), abstract)
    tree = jax.tree.map(np.asarray, tree)
    return like.replace(params=tree["params"], state=tree["state"])


def _cached(path: Path, key: Any, compute: Callable[[], Any]) -> Any:
    """`compute()` stored in `path` under `key` (as JSON), reused while the key matches."""
    key = as_json(key)
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["value"]
    value = as_json(compute())
    write_json(path, {"key": key, "value": value})
    return value


def run_study(
    workdir: str | Path,
    config: StudyConfig,
    *,
    params0: ModelParams | None = None,
    data: FoolingData | None = None,
    mesh=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs (or resumes) the study in `workdir` and writes its results and report.

    Args:
      workdir: the work directory (created; an existing one is resumed).
      config: the study.
      params0: the original model (default: from `config.checkpoint` or `config.train`).
      data: the data (default: `make_data(config.data)`).
      mesh: the fine-tuning mesh (default: every device if the batches split evenly, else one).
      progress: progress bars.
      log: where progress lines go.

    Returns:
      The results written to the results JSON, plus "results_path" and "report_path".
    """
    from experiments import fooling_analyses, fooling_report

    t0, c0 = time.perf_counter(), time.process_time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    unknown = set(config.analyses) - set(ANALYSES)
    if unknown:
        raise ValueError(f"unknown analyses {sorted(unknown)}; choose from {', '.join(ANALYSES)}")
    model = {}
    if params0 is None:
        params0, model = original_model(workdir, config, progress=progress)
        log(f"original model: {model}")
    data = make_data(config.data, cache_dir=workdir / "data") if data is None else data
    if mesh is None:  # every device when every batch splits evenly over them, else one
        n = jax.device_count()
        even = all(r.batch_size % n == 0 and (r.kind != "active" or r.fool_batch % n == 0)
                   for r in config.runs)  # fmt: skip
        mesh = make_mesh(None if even else jax.devices()[:1])
    original = evaluate(params0, data.test())
    results: dict[str, Any] = {"config": as_json(config), "model": model,
                               "original": {"top1": original["accuracy"], "top5": original["top5"]},
                               "runs": {}}  # fmt: skip
    fooled = {}
    for run in config.runs:
        run_dir = workdir / "runs" / run.label
        params, record = fool(run_dir, run, params0, data, config, mesh=mesh, progress=progress,
                              log=log)  # fmt: skip
        fooling = run.fooling(config.data.classes)
        fooled[run.label] = (params, fooling)
        ev_key = {"eval": config.eval, "run": run}
        ev = _cached(run_dir / "evaluation.json", ev_key,
                     lambda p=params, f=fooling: evaluate_model(p, params0, data, f, config))  # fmt: skip
        neutral = dataclasses.replace(fooling, method="gradcam", lam=0.0)  # the baseline's key
        base = _cached(workdir / "original" / f"{fooling.kind}.json",
                       {"eval": config.eval, "data": config.data, "fooling": neutral},
                       lambda f=neutral: evaluate_model(params0, params0, data, f, config))  # fmt: skip
        entry = {"kind": run.kind, "method": run.method, "lam": run.lam, "lr": run.lr,
                 "steps": run.steps, "batch_size": run.batch_size,
                 "fine_tune_seconds": record["seconds"], "cached": record["cached"],
                 "fooled": ev, "original": base,
                 "final": record["history"][-1] if record["history"] else {}}  # fmt: skip
        if _wants_aopc(config, run.label):
            entry["aopc"] = _cached(run_dir / "aopc.json", {"eval": config.eval, "run": run},
                                    lambda p=params, f=fooling: _aopc(p, params0, data, f, config))  # fmt: skip
        results["runs"][run.label] = entry
        log(f"{run.label}: " + _summary(entry))
    results["transfer"] = {name: r["fooled"]["fsr"] for name, r in results["runs"].items()}
    results["transfer_original"] = {
        name: r["original"]["fsr"] for name, r in results["runs"].items()
    }
    for name in config.analyses:
        fn = getattr(fooling_analyses, name)
        results[name] = fn(workdir, config, params0, data, fooled, mesh=mesh, progress=progress,
                           log=log)  # fmt: skip
    results["wall_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = time.process_time() - c0
    results_path, report_path = fooling_report.write(
        workdir, results, params0, fooled, data, config
    )
    log(fooling_report.text_tables(results))
    log(f"wrote {results_path} and {report_path}")
    return {**results, "results_path": str(results_path), "report_path": str(report_path)}


def _wants_aopc(config: StudyConfig, label: str) -> bool:
    runs = config.eval.aopc_runs
    return runs == "all" or label in runs


def _aopc(params, params0, data, fooling, config) -> dict:
    if fooling.kind == "active":  # the paper's AOPC is on ordinary images and the true class
        fooling = dataclasses.replace(fooling, kind="location", classes=None)
    test = data.test()
    n = min(config.eval.aopc_images, len(test["label"]))
    curves = analysis.aopc_curves(
        params0, params, test["image"][:n], test["label"][:n], fooling,
        key=jax.random.key(config.seed), steps=config.eval.aopc_steps,
        batch_size=config.eval.batch_size,
    )  # fmt: skip
    return {m: {o: np.asarray(v).tolist() for o, v in d.items()} for m, d in curves.items()}


def _summary(entry: dict) -> str:
    f, o = entry["fooled"], entry["original"]
    fsr = ", ".join(f"{m} {f['fsr'][m]:.2f} (orig {o['fsr'][m]:.2f})" for m in f["fsr"])
    return f"top1 {o['top1']:.3f} -> {f['top1']:.3f}; FSR {fsr}"
