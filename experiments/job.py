"""The main job: train (or load) the small CNN, then map, score and draw every interpreter.

Outputs in the work directory:

- `models/<arch>-<hash>/`: the trained model (see `jaxsal.training.train_or_load`),
  reused by every later run with the same training configuration.
- `saliency_grid.png`: scenes with their ground-truth boxes and every interpreter's map.
- `results.json`: accuracy, per-interpreter wall time, mass in box, pointing game.

A work directory is never overwritten: when `results.json` or `saliency_grid.png`
already exist, a run writes `results-<timestamp>.json` and
`saliency_grid-<timestamp>.png` beside them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxsal
from experiments.config import JobConfig
from experiments.saliency_grid import (
    baselines,
    compute_maps,
    mass_in_box,
    methods,
    plot_grid,
    pointing_hits,
)
from jaxsal.training import eval_scenes, evaluate, train_or_load

RESULTS = "results.json"
FIGURE = "saliency_grid.png"


def output_paths(workdir: str | Path, *, now: float | None = None) -> tuple[Path, Path]:
    """Paths for this run's results and figure: the plain names if both are free, else
    timestamped ones (with a counter if a timestamp is taken), so nothing is overwritten."""
    workdir = Path(workdir)
    results, figure = workdir / RESULTS, workdir / FIGURE
    if not results.exists() and not figure.exists():
        return results, figure
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for k in range(1000):
        suffix = f"-{stamp}" + (f"-{k}" if k else "")
        results = workdir / f"results{suffix}.json"
        figure = workdir / f"saliency_grid{suffix}.png"
        if not results.exists() and not figure.exists():
            return results, figure
    raise FileExistsError(f"no free output name in {workdir}; clean it up")


def run_job(
    workdir: str | Path,
    config: JobConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the main job in `workdir` (created if needed) and returns the results.

    Args:
      workdir: the work directory; an existing one is reused, never overwritten.
      config: what to train and how to run the interpreters.
      progress: show progress bars while training.
      log: where to write the progress lines and the final table.

    Returns:
      The content written to the results JSON, plus "results_path".
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    params, record = train_or_load(workdir / "models", config.train, progress=progress)
    log(("loaded" if record["cached"] else "trained") + f" {record['path']}")

    test = eval_scenes("test", config.train)
    metrics = evaluate(params, test)
    k = min(config.scenes, len(test))
    x, c, boxes = jnp.asarray(test.images[:k]), jnp.asarray(test.labels[:k]), test.boxes[:k]
    predicted = np.asarray(jaxsal.logits(params, x).argmax(-1))

    table = methods(samples=config.samples, var_samples=config.var_samples, steps=config.steps)
    maps, times = compute_maps(params, x, c, table, key=jax.random.key(config.seed))
    interpreters = {
        name: {
            **times[name],
            "mass_in_box": float(mass_in_box(m, boxes).mean()),
            "pointing_game": float(pointing_hits(m, boxes, tolerance=config.tolerance).mean()),
            "hyper": dict(table[name].hyper),
        }
        for name, m in maps.items()
    }

    results_path, figure_path = output_paths(workdir)
    labels = [f"true {t} / pred {p}" for t, p in zip(test.labels[:k], predicted)]
    plot_grid(test.canvas()[:k], boxes, maps, figure_path, row_labels=labels)
    results = {
        "config": dataclasses.asdict(config),
        "model": {
            "path": record["path"],
            "cached": record["cached"],
            "train_seconds": record["train_seconds"],
            "validation": record["validation"],
        },
        "test": metrics,
        "scenes": {"split": "test", "n": k, "labels": c.tolist(), "predicted": predicted.tolist()},
        "interpreters": interpreters,
        "baselines": baselines(boxes, x.shape[1:3], tolerance=config.tolerance),
        "figure": figure_path.name,
        "wall_seconds": time.perf_counter() - t0,
    }
    results_path.write_text(json.dumps(results, indent=2))
    log(format_table(results))
    log(f"wrote {results_path} and {figure_path}")
    return {**results, "results_path": str(results_path)}


def format_table(results: dict[str, Any]) -> str:
    """The short text table the main job prints."""
    test, base = results["test"], results["baselines"]
    lines = [
        f"test accuracy {test['accuracy']:.3f} (top-5 {test['top5']:.3f}, n={test['n']}); "
        f"model {'loaded from cache, ' if results['model']['cached'] else ''}"
        f"trained in {results['model']['train_seconds']:.0f} s; {results['scenes']['n']} scenes",
        f"{'interpreter':<22}{'seconds':>9}{'1st call':>10}{'mass in box':>13}{'pointing':>10}",
    ]
    for name, r in results["interpreters"].items():
        lines.append(
            f"{name:<22}{r['seconds']:>9.3f}{r['first_call_seconds']:>10.2f}"
            f"{r['mass_in_box']:>13.3f}{r['pointing_game']:>10.3f}"
        )
    lines.append(
        f"{'chance (uniform/centre)':<22}{'':>9}{'':>10}"
        f"{base['uniform_mass_in_box']:>13.3f}{base['centre_pointing']:>10.3f}"
    )
    return "\n".join(lines)
