"""One fooling: fine-tune (resumably) or load, and the per-image test values of a model.

`fool` runs `CE + lam * L_F` with the training engine (`jaxsal.train.fit`),
checkpointed in `run_dir/checkpoints`, the finished model written with
`jaxsal.save` to `run_dir/model` and its history to `run_dir/run.json`; a
finished run is loaded, never redone, and a directory holding another run is
refused. `test_values` gives the per-image values of every test of a fooling
kind (see `TESTS`), measured with any method of the method table, so that FSR
under any interval and bootstrap intervals can be computed afterwards.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsal
from experiments.common import as_json, write_json
from experiments.fooling.config import RunConfig, StudyConfig
from experiments.fooling.data import FoolingData
from jaxsal import train
from jaxsal.fooling import (
    Fooling,
    active_swap_score,
    heatmap_of,
    loss,
    losses_from_maps,
    robust_fooling_loss,
)
from jaxsal.metrics import spearman
from jaxsal.params import ModelParams

# Each kind's tests: test name -> "low" (lower means fooled) or "high".
TESTS = {
    "location": {"loss": "low"},
    "topk": {"loss": "low"},
    "center_mass": {"score": "high"},
    "active": {"spearman": "high", "spearman_c1": "high", "spearman_c2": "high",
               "swap_c1": "high", "swap_c2": "high"},
}  # fmt: skip
# The paper's intervals R_I (SPEC section 1); the box swap test (ours) needs a positive score.
PAPER = {"location": (0.0, 0.2), "topk": (0.0, 0.3), "center_mass": (0.1, 1.0),
         "spearman": (0.5, 1.0), "swap": (1e-9, 1.0)}  # fmt: skip


def paper_interval(kind: str, test: str) -> tuple[float, float]:
    """The paper's interval of a test (the swap test: a positive score)."""
    if kind != "active":
        return PAPER[kind]
    return PAPER["swap" if test.startswith("swap") else "spearman"]


def fsr(values: np.ndarray, interval) -> float:
    """Share of the values inside the closed interval (NaN counts as a failure)."""
    lo, hi = interval
    v = np.asarray(values, np.float64)
    return float(np.mean((v >= lo) & (v <= hi))) if v.size else float("nan")


def loss_fn(run: RunConfig, fooling: Fooling) -> Callable:
    """`loss_fn(params, batch, params0)` of a run for the training engine."""
    if run.robust_eps is not None:
        return functools.partial(robust_fooling_loss, fooling=fooling, eps=run.robust_eps)
    return functools.partial(loss, fooling=fooling)


def fool(
    run_dir: Path,
    run: RunConfig,
    params0: ModelParams,
    data: FoolingData,
    config: StudyConfig,
    *,
    classes,
    seed: int,
    mesh=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[ModelParams, dict]:
    """Fine-tunes one fooling in `run_dir`, or loads it when finished.

    Returns:
      (fooled params, record): the run's config, loss history, seconds, "cached".
    """
    record_path, model_path = run_dir / "run.json", run_dir / "model"
    fooling = run.fooling(classes)
    run_config = {"run": as_json(run), "data": as_json(config.data), "classes": list(classes),
                  "seed": seed}  # fmt: skip
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if record["config"] != run_config:
            raise ValueError(
                f"{run_dir} holds a different run ({record['config']}); use another workdir "
                "or remove that directory to redo it"
            )
        log(f"{run.label}: finished earlier, loaded")
        return jaxsal.load(model_path, like=params0), {**record, "cached": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    fool_batch = run.fool_batch if run.kind == "active" else 0

    def batch_fn(step):
        return data.train_batch(step, batch_size=run.batch_size, fool_batch=fool_batch,
                                classes=classes, seed=seed, reposition=run.reposition)  # fmt: skip

    t0 = time.perf_counter()
    params, history = train.fit(
        loss_fn(run, fooling), params0, batch_fn, tx=optax.adam(run.lr), steps=run.steps,
        frozen=params0, workdir=run_dir, checkpoint_every=config.checkpoint_every, mesh=mesh,
        config=run_config, progress=progress, desc=f"seed {seed} {run.label}",
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    jaxsal.save(model_path, params, overwrite=True)
    record = {"config": run_config, "history": history, "seconds": seconds}
    write_json(record_path, record)
    return params, {**record, "cached": False}


@functools.partial(jax.jit, static_argnames=("fooling", "method"))
def _maps(params, x, c, key, fooling, method):
    return heatmap_of(params, x, c, fooling, method, key)


def maps(params: ModelParams, x: np.ndarray, c: np.ndarray, fooling: Fooling, method: str, *,
         batch_size: int = 100) -> np.ndarray:  # fmt: skip
    """`heatmap_of` of `method` (with `fooling`'s settings) for every image, (N, h, w, 1) float32.

    Stochastic methods draw from `fooling.seed` folded with the batch's position.
    """
    out = []
    stochastic = fooling.method_of(method).stochastic
    for i in range(0, len(x), batch_size):
        key = jax.random.fold_in(jax.random.key(fooling.seed), i) if stochastic else None
        h = _maps(params, jnp.asarray(x[i : i + batch_size]), jnp.asarray(c[i : i + batch_size]),
                  key, fooling, method)  # fmt: skip
        out.append(np.asarray(h, np.float32))
    return np.concatenate(out)


def split_maps(params, data: FoolingData, fooling: Fooling, method: str, split: str, *,
               batch_size: int = 100) -> np.ndarray:  # fmt: skip
    """The maps of the true class on a split's images."""
    ev = data.split(split)
    return maps(params, ev["image"], ev["label"], fooling, method, batch_size=batch_size)


def composite_maps(params, data: FoolingData, fooling: Fooling, method: str, split: str, *,
                   batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The maps of class c1 and of class c2 on a split's composites."""
    x = data.composites(split, fooling.classes)["image"]
    return tuple(maps(params, x, np.full((len(x),), c), fooling, method, batch_size=batch_size)
                 for c in fooling.classes)  # fmt: skip


@functools.partial(jax.jit, static_argnames=("fooling", "method"))
def _passive(h, h0, fooling, method):
    return losses_from_maps(fooling, h, h0, method=method)


def passive_values(fooling: Fooling, method: str, h: np.ndarray, h0: np.ndarray) -> dict:
    """Per-image test values of a passive fooling ("loss" or "score") from the two models' maps."""
    name = next(iter(TESTS[fooling.kind]))
    vals = [np.asarray(_passive(jnp.asarray(h[i : i + 500]), jnp.asarray(h0[i : i + 500]),
                                fooling, method), np.float64)
            for i in range(0, len(h), 500)]  # fmt: skip
    return {name: np.concatenate(vals)}


@functools.partial(jax.jit, static_argnames=("size",))
def _active(h1, h2, o1, o2, boxes1, boxes2, size):
    s1, s2 = spearman(h1, o2), spearman(h2, o1)
    return {"spearman": 0.5 * (s1 + s2), "spearman_c1": s1, "spearman_c2": s2,
            "swap_c1": active_swap_score(h1, boxes1, boxes2, size),
            "swap_c2": active_swap_score(h2, boxes2, boxes1, size)}  # fmt: skip


def active_values(data: FoolingData, fooling: Fooling, split: str, fooled, original) -> dict:
    """Per-image values of Active's tests from the (c1, c2) maps of the fooled and original model.

    "spearman": the paper's rank correlation of each class's fooled map with
    the other class's original map, averaged over the two swaps, and per class
    ("spearman_c1", "spearman_c2"); "swap_c1", "swap_c2": the box-based swap
    score (`jaxsal.fooling.active_swap_score`) of each class's fooled map.
    """
    comp = data.composites(split, fooling.classes)
    size = tuple(comp["image"].shape[1:3])
    out: dict[str, list] = {}
    for i in range(0, len(fooled[0]), 500):
        sl = slice(i, i + 500)
        vals = _active(*(jnp.asarray(a[sl]) for a in (*fooled, *original)),
                       jnp.asarray(comp["boxes_c1"][sl]), jnp.asarray(comp["boxes_c2"][sl]),
                       size)  # fmt: skip
        for k, v in vals.items():
            out.setdefault(k, []).append(np.asarray(v, np.float64))
    return {k: np.concatenate(v) for k, v in out.items()}


def test_values(
    params: ModelParams,
    params0: ModelParams,
    data: FoolingData,
    fooling: Fooling,
    method: str,
    split: str,
    *,
    batch_size: int = 100,
) -> dict[str, np.ndarray]:
    """Per-image values of every test of `fooling.kind`, measured with `method` on `split`.

    Location and Top-k: the per-image penalty ("loss"); Center-mass: the
    normalised centre shift ("score"); Active: see `active_values`.
    """
    kw = {"batch_size": batch_size}
    if fooling.kind == "active":
        return active_values(data, fooling, split,
                             composite_maps(params, data, fooling, method, split, **kw),
                             composite_maps(params0, data, fooling, method, split, **kw))  # fmt: skip
    h = split_maps(params, data, fooling, method, split, **kw)
    h0 = h if params is params0 else split_maps(params0, data, fooling, method, split, **kw)
    return passive_values(fooling, method, h, h0)


def accuracy(params: ModelParams, data: FoolingData, split: str) -> dict:
    """Top-1 / Top-5 on a split, and the per-image top-1 hits (for intervals)."""
    ev = data.split(split)
    m = train.evaluate(params, ev)
    pred = train.predict(params, ev["image"])
    return {"top1": m["accuracy"], "top5": m["top5"],
            "hits": (pred == np.asarray(ev["label"])).astype(np.float64)}  # fmt: skip


def aopc(params, params0, data: FoolingData, fooling: Fooling, *, images: int, steps, seed: int,
         batch_size: int) -> dict:  # fmt: skip
    """AOPC curves of the original and the fooled model (Heo et al. figure 4a) on test images."""
    from jaxsal.fooling import aopc_curves

    ev = data.split("test")  # ordinary images and their true class, for every kind
    n = min(images, len(ev["label"]))
    curves = aopc_curves(params0, params, ev["image"][:n], ev["label"][:n], fooling,
                         key=jax.random.key(seed), steps=steps,
                         batch_size=batch_size)  # fmt: skip
    return {m: {o: np.asarray(v).tolist() for o, v in d.items()} for m, d in curves.items()}
