"""Trustworthy CNNs (Halliwell & Lecue): baseline vs saliency-penalised fine-tuning.

    python -m experiments.trustworthy --workdir runs/trustworthy            # embedded default
    python -m experiments.trustworthy --workdir runs/trust_smoke --preset smoke

The embedded default trains (or loads) the small CNN on the digit scenes, then
fine-tunes only its last conv for each variant (cross-entropy baseline, the
eq. 7 loss with Grad-CAM and with Guided Grad-CAM, the R1 = 0 and R2 = 0
ablations) and scores each on held-out scenes with known boxes: accuracy,
macro precision and recall, the pointing game and the share of saliency
energy in the box, and the SSIM between the baseline's and each model's maps.

Outputs in the work directory (never overwritten: an existing `results.json`
of the same configuration is resumed, another configuration writes
timestamped files beside it): `finetuned/*.npz` (each fine-tuned model, reused
on resume), `results.json`, `report.md`, `maps.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from experiments.saliency_grid import baselines, mass_in_box, pointing_hits
from experiments.trustworthy_config import PRESETS, SceneExperiment, TfdsExperiment
from jaxsal.data import batches, digit_scenes
from jaxsal.metrics import ssim
from jaxsal.params import ModelParams
from jaxsal.training import train_or_load
from jaxsal.trust import TrustConfig, fit, masked_optimizer
from jaxsal.trust.evaluation import classification_metrics, predict_and_explain

METHODS = ("gradcam", "guided_gradcam")


def config_hash(*parts: Any) -> str:
    text = json.dumps([_jsonable(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _jsonable(x):
    return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x


def start(workdir, kind: str, cfg) -> tuple[Path, dict, dict[str, Path], dict | None]:
    """Creates the work directory; returns it, the run's config record, its output
    paths, and the finished results to resume (same config) if any."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"kind": kind, **dataclasses.asdict(cfg)}
    return workdir, config, *output_names(workdir, json.loads(json.dumps(config)))


def output_names(workdir: Path, config: dict) -> tuple[dict[str, Path], dict | None]:
    """This run's output paths, and the finished results to resume (same config) if any."""
    plain = {"results": workdir / "results.json", "report": workdir / "report.md",
             "figure": workdir / "maps.png"}  # fmt: skip
    if plain["results"].exists():
        old = json.loads(plain["results"].read_text())
        if old.get("config") == config:
            return plain, old
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return {k: p.with_name(f"{p.stem}-{stamp}{p.suffix}") for k, p in plain.items()}, None
    return plain, None


# ---------------------------------------------------------------- fine-tuned models


def save_params(path: Path, params: ModelParams, history: list[dict]) -> None:
    flat = jax.tree_util.tree_flatten_with_path(params.params)[0]
    arrays = {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)
    path.with_suffix(".json").write_text(json.dumps(history))


def load_params(path: Path, like: ModelParams) -> tuple[ModelParams, list[dict]]:
    data = np.load(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(like.params)
    leaves = [data[jax.tree_util.keystr(k)] for k, _ in flat]
    history = json.loads(path.with_suffix(".json").read_text())
    return like.replace(params=jax.tree.unflatten(treedef, leaves)), history


def finetune(
    workdir: Path, name: str, params: ModelParams, data_fn, *, loss: TrustConfig,
    trainable, learning_rate: float, steps: int, key: str, progress: bool,
) -> tuple[ModelParams, list[dict], float]:  # fmt: skip
    """Fine-tunes `trainable` with SGD, or loads the result of an earlier run."""
    slug = name.replace(" ", "_").replace("=", "")
    path = workdir / "finetuned" / f"{slug}-{config_hash(key, loss)}.npz"
    if path.exists():
        p, hist = load_params(path, params)
        return p, hist, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tx = masked_optimizer(optax.sgd(learning_rate), params, trainable)
    t0 = time.perf_counter()
    p, hist = fit(params, data_fn(), config=loss, tx=tx, steps=steps, progress=progress, desc=name)
    seconds = time.perf_counter() - t0
    save_params(path, p, hist)
    return p, hist, seconds


# ---------------------------------------------------------------- scoring


def score(pred: dict, base: dict | None, boxes, *, num_classes: int, tolerance: float) -> dict:
    """Classification metrics, box metrics (if boxes) and SSIM to the baseline's maps."""
    row = classification_metrics(pred["label"], pred["prediction"], num_classes=num_classes)
    for m in [m for m in METHODS if m in pred]:
        if boxes is not None:
            row[f"pointing_{m}"] = float(pointing_hits(pred[m], boxes, tolerance=tolerance).mean())
            row[f"mass_in_box_{m}"] = float(mass_in_box(pred[m], boxes).mean())
        if base is not None:
            row[f"ssim_{m}"] = float(np.mean(np.concatenate([
                np.asarray(ssim(pred[m][i:i + 100, ..., None], base[m][i:i + 100, ..., None]))
                for i in range(0, len(pred[m]), 100)])))  # fmt: skip
    return row


COLUMNS = [("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"),
           ("pointing_gradcam", "Pointing (GC)"), ("mass_in_box_gradcam", "Energy in box (GC)"),
           ("ssim_gradcam", "SSIM (GC)"), ("pointing_guided_gradcam", "Pointing (GGC)"),
           ("mass_in_box_guided_gradcam", "Energy in box (GGC)"),
           ("ssim_guided_gradcam", "SSIM (GGC)")]  # fmt: skip


def format_table(models: dict[str, dict]) -> str:
    cols = [c for c in COLUMNS if any(c[0] in r for r in models.values())]
    lines = ["| Model | " + " | ".join(t for _, t in cols) + " |",
             "|---|" + "---:|" * len(cols)]  # fmt: skip
    for name, row in models.items():
        cells = [f"{100 * row[k]:.1f}%" if k in row and not k.startswith("ssim") else
                 (f"{row[k]:.4f}" if k in row else "-") for k, _ in cols]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_examples(path: Path, canvas, boxes, maps: dict[str, np.ndarray]) -> None:
    """Scenes with their boxes, then each (model, method) map side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n, cols = len(canvas), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i in range(n):
        panels = [("scene", canvas[i], "gray")] + [(t, m[i], "jet") for t, m in maps.items()]
        for j, (title, img, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
            if boxes is not None:
                y0, x0, y1, x1 = boxes[i]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       edgecolor="white", linewidth=0.8))  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=6)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def example_maps(preds: dict[str, dict], k: int) -> dict[str, np.ndarray]:
    out = {}
    for m, short in (("gradcam", "GC"), ("guided_gradcam", "GGC")):
        if m not in preds["baseline"]:
            continue
        out[f"baseline\n{short} map"] = preds["baseline"][m][:k]
        if m in preds and m in preds["baseline"]:
            out[f"trustworthy ({short})\n{short} map"] = preds[m][m][:k]
    return out


# ---------------------------------------------------------------- the experiments


def run(workdir, cfg: SceneExperiment, *, progress: bool = True, models_dir=None) -> dict:
    """The embedded experiment (digit scenes with boxes); returns the results dict."""
    workdir, config, paths, done = start(workdir, "scenes", cfg)
    if done is not None:
        return {**done, "resumed": True}
    t0, c0 = time.perf_counter(), time.process_time()
    base, record = train_or_load(models_dir or workdir / "models", cfg.train, progress=progress)
    size = cfg.train.size
    tune = digit_scenes("train", size=size, seed=(cfg.seed, 7), n=cfg.n_finetune)
    test = digit_scenes("test", size=size, seed=cfg.train.seed, n=cfg.n_test)

    def data():
        return batches(tune, cfg.batch_size, shuffle=True, seed=cfg.seed, epochs=None,
                       drop_remainder=True)  # fmt: skip

    key = [cfg.train.key(), cfg.trainable, cfg.learning_rate, cfg.steps, cfg.batch_size,
           cfg.n_finetune, cfg.seed]  # fmt: skip
    preds = {"pretrained": predict_and_explain(base, batches(test, 100), layer=cfg.cam_layer)}
    models, train_seconds = {"pretrained": {}}, {}
    for name, loss in cfg.variants().items():
        p, hist, secs = finetune(workdir, name, base, data, loss=loss, trainable=[cfg.trainable],
                                 learning_rate=cfg.learning_rate, steps=cfg.steps, key=key,
                                 progress=progress)  # fmt: skip
        train_seconds[name] = secs
        preds[name] = predict_and_explain(p, batches(test, 100), layer=cfg.cam_layer)
        models[name] = {"first_loss": hist[0]["loss"], "last_loss": hist[-1]["loss"],
                        "last_s": hist[-1]["s"]}  # fmt: skip
    for name in preds:  # "pretrained": the base model before fine-tuning
        other = None if name == "baseline" else preds["baseline"]
        models[name].update(score(preds[name], other, test.boxes, num_classes=10,
                                  tolerance=cfg.tolerance))  # fmt: skip
    results = {
        "config": config,
        "base_model": {k: record[k] for k in ("path", "cached", "test", "train_seconds")},
        "chance": baselines(test.boxes, (size, size), tolerance=cfg.tolerance),
        "models": models,
        "finetune_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "devices": len(jax.devices()),
    }
    plot_examples(paths["figure"], test.canvas()[: cfg.examples], test.boxes[: cfg.examples],
                  example_maps(preds, cfg.examples))  # fmt: skip
    write(paths, results)
    return {**results, "resumed": False}


def run_tfds(workdir, cfg: TfdsExperiment, *, progress: bool = True, params=None) -> dict:
    """A full-scale set-up (MobileNetV2 transfer or VGG16 one-layer) on a TFDS data set.

    Args:
      workdir: the work directory.
      cfg: the configuration.
      progress: progress bars.
      params: the starting model (default: built from `cfg.arch` and `cfg.weights`).
    """
    from jaxsal.data import tfds_images

    workdir, config, paths, done = start(workdir, "tfds", cfg)
    if done is not None:
        return {**done, "resumed": True}
    t0, c0 = time.perf_counter(), time.process_time()
    params = params if params is not None else starting_model(cfg)
    common = dict(batch_size=cfg.batch_size, data_dir=cfg.data_dir, image_size=cfg.image_size)

    def data():
        return tfds_images.batches(cfg.dataset, cfg.train_split, shuffle=True, seed=cfg.seed,
                                   num_records=cfg.num_train, epochs=cfg.epochs, **common)  # fmt: skip

    n = cfg.num_train or len(
        tfds_images.source(cfg.dataset, cfg.train_split, data_dir=cfg.data_dir)
    )
    steps = cfg.epochs * (n // cfg.batch_size)
    key = [dataclasses.asdict(cfg), "tfds"]
    preds, models = {}, {}
    for name, loss in cfg.variants().items():
        p, hist, secs = finetune(workdir, name, params, data, loss=loss, trainable=cfg.trainable,
                                 learning_rate=cfg.learning_rate, steps=steps, key=key,
                                 progress=progress)  # fmt: skip
        test = tfds_images.batches(cfg.dataset, cfg.test_split, shuffle=False,
                                   num_records=cfg.num_test, **common)  # fmt: skip
        preds[name] = predict_and_explain(p, test, layer=cfg.cam_layer, methods=cfg.methods)
        models[name] = {"train_seconds": secs, "last_loss": hist[-1]["loss"] if hist else None}
    for name in preds:
        other = None if name == "baseline" else preds["baseline"]
        models[name].update(score(preds[name], other, None, num_classes=cfg.num_classes,
                                  tolerance=0.0))  # fmt: skip
    results = {"config": config, "models": models, "steps": steps,
               "wall_seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}  # fmt: skip
    images = np.asarray(next(iter(tfds_images.batches(cfg.dataset, cfg.test_split, shuffle=False,
                        num_records=4, **{**common, "batch_size": 4})))["image"])  # fmt: skip
    canvas = np.clip(images * np.asarray(tfds_images.IMAGENET_STD) +
                     np.asarray(tfds_images.IMAGENET_MEAN), 0, 1)  # fmt: skip
    plot_examples(paths["figure"], canvas, None, example_maps(preds, len(canvas)))
    write(paths, results)
    return {**results, "resumed": False}


def starting_model(cfg: TfdsExperiment) -> ModelParams:
    """Converted torchvision weights (a .pth or a `jaxsal.save` directory), plus the head."""
    import jaxsal
    from jaxsal.trust import transfer_model

    if cfg.weights is None:
        p = jaxsal.init(cfg.arch, jax.random.key(cfg.seed))
    elif Path(cfg.weights).is_dir():
        p = jaxsal.load(cfg.weights)
    else:
        from weights_convert import from_torchvision

        p = from_torchvision(cfg.arch, cfg.weights)
    if cfg.transfer:
        p = transfer_model(p, jax.random.key(cfg.seed), num_classes=cfg.num_classes,
                           filters=cfg.filters)  # fmt: skip
    return p


def write(paths: dict[str, Path], results: dict) -> None:
    paths["results"].write_text(json.dumps(results, indent=2))
    lines = [
        "# Trustworthy CNNs (Halliwell & Lecue): baseline vs saliency-penalised fine-tuning",
        "",
        f"Configuration: `{json.dumps(results['config'])}`",
        "",
        format_table(results["models"]),
        "",
        "GC: Grad-CAM, GGC: Guided Grad-CAM post hoc maps of the true class (each divided by",
        "its maximum). Pointing: the map's maximum lies in the object's box; energy in box:",
        "the map's share inside the box; SSIM: against the baseline's maps (data range 1).",
    ]
    if "chance" in results:
        ch = results["chance"]
        lines += ["", f"Chance: uniform map energy in box {100 * ch['uniform_mass_in_box']:.1f}%, "
                  f"centre pointing {100 * ch['centre_pointing']:.1f}%."]  # fmt: skip
    lines += ["", f"Wall time {results['wall_seconds']:.0f} s, CPU time "
              f"{results['cpu_seconds']:.0f} s.", "", f"![maps]({paths['figure'].name})", ""]  # fmt: skip
    paths["report"].write_text("\n".join(lines))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="runs/trustworthy")
    ap.add_argument("--preset", default="embedded", choices=sorted(PRESETS))
    ap.add_argument(
        "--models-dir",
        default=None,
        help="cache of trained base models (default WORKDIR/models; e.g. runs/models)",
    )
    ap.add_argument("--weights", default=None, help="torchvision .pth or jaxsal.save directory")
    ap.add_argument("--data-dir", default=None, help="TFDS data directory")
    ap.add_argument("--lr", type=float, default=None, help="override the learning rate")
    ap.add_argument("--lam", type=float, default=None, help="override lambda of eq. 7")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    cfg = PRESETS[args.preset]()
    over = {k: v for k, v in (("learning_rate", args.lr), ("lam", args.lam)) if v is not None}
    if isinstance(cfg, TfdsExperiment):
        over.update({k: v for k, v in (("weights", args.weights), ("data_dir", args.data_dir))
                     if v is not None})  # fmt: skip
        result = run_tfds(args.workdir, dataclasses.replace(cfg, **over),
                          progress=not args.no_progress)  # fmt: skip
    else:
        result = run(args.workdir, dataclasses.replace(cfg, **over),
                     progress=not args.no_progress, models_dir=args.models_dir)  # fmt: skip
    print(format_table(result["models"]))
    print(f"wall {result['wall_seconds']:.0f} s, CPU {result['cpu_seconds']:.0f} s"
          + (" (resumed)" if result["resumed"] else ""))  # fmt: skip
    return result


if __name__ == "__main__":
    main()
