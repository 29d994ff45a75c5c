"""Pointing game and class discrimination of perturbation explainers on two-digit scenes.

    python -m experiments.pointing --workdir runs/pointing            # embedded default
    python -m experiments.pointing --workdir runs/quick --quick       # seconds-scale smoke run
    python -m experiments.pointing --workdir runs/pointing --photos-only [--checkpoint DIR]

Each scene holds two digits of different classes (several class pairs, held-out
test digits); every method explains each class present with the small CNN of
`jaxsal.training.train_or_load` (default `TrainConfig`, cached under
`--cache-dir`, default `<workdir>/models`). Scores per method: pointing accuracy
(tolerance 15 px scaled to the 96 px canvas: 6.4 px; also 0 and 15 px), class
discrimination (the map for class A against the box of class B), deletion and
insertion curves (`jaxsal.fooling.perturbation`), wall and CPU time.

Outputs in the work directory (never overwritten: later runs get timestamped
names): `pointing.json` (every figure), `pointing.md` (the report),
`pointing.png` (maps side by side, own box green, other box red); with
`--photos` or `--photos-only` also `photos.png`: every method on three
scikit-image photos with resnet18 (random weights unless `--checkpoint DIR`
gives converted ones, loaded with `jaxsal.load`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxsal
from jaxsal import explainers, postprocess
from jaxsal import pointing as pg
from jaxsal.data import MEAN, STD, composite_scenes
from jaxsal.explainers import references as refs
from jaxsal.fooling.perturbation import perturbation_curve
from jaxsal.models.registry import arch_of
from jaxsal.training import TrainConfig, train_or_load

NAMES = ("pointing.json", "pointing.md", "pointing.png")
PHOTOS = ("chelsea", "coffee", "astronaut")


@dataclasses.dataclass(frozen=True)
class PointingConfig:
    """The embedded pointing experiment.

    Attributes:
      train: the small CNN's training configuration (default: `TrainConfig()`).
      pairs: digit class pairs (a, b); each scene holds one digit of each.
      scenes_per_pair: held-out test scenes per pair (each explained for both classes).
      steps: iterations of the optimised masks (the papers use 300; fewer to fit
        the 10-minute CPU budget).
      extremal_areas: Extremal Perturbation's areas, whose masks are summed
        (TorchRay's pointing set-up: 0.025, 0.05, 0.1, 0.2).
      rise_masks: RISE masks (8,000 in the paper).
      curve_patch: patch side of the deletion / insertion curves.
      figure_rows: explanations shown in the figure.
      seed: PRNG seed of the stochastic methods.
    """

    train: TrainConfig = TrainConfig()
    pairs: tuple = ((3, 8), (1, 7), (0, 6), (2, 5), (4, 9))
    scenes_per_pair: int = 2
    steps: int = 100
    extremal_areas: tuple = (0.05, 0.1)
    rise_masks: int = 500
    curve_patch: int = 16
    figure_rows: int = 6
    seed: int = 0


def quick_config() -> PointingConfig:
    """Seconds-scale variant for smoke tests."""
    train = TrainConfig(n_train=256, n_eval=64, epochs=1, batch_size=32, warmup_steps=2)
    return PointingConfig(train=train, pairs=((3, 8),), scenes_per_pair=1, steps=4,
                          rise_masks=100, curve_patch=32, figure_rows=2)  # fmt: skip


def scaled(v: float, size: int) -> float:
    """A constant given for 224-pixel images, scaled to `size` pixels."""
    return v * size / 224


def method_table(config: PointingConfig, size: int, *, mean=MEAN, std=STD) -> dict[str, Callable]:
    """Every method as `fn(params, x, c, key) -> (N, H, W)` maps; constants scaled to `size`.

    `mean` and `std` are the input normalisation (numbers, or one per channel):
    black pixels and U(0, 1) noise are expressed in normalised units.
    """
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    black = (-mean / std).reshape(1, 1, 1, -1) if mean.ndim else float(-mean / std)
    white = ((1 - mean) / std).reshape(1, 1, 1, -1) if mean.ndim else float((1 - mean) / std)
    noise = refs.uniform(black, white)  # U(0, 1) pixels
    steps, hw = config.steps, (size, size)

    def gradcam(p, x, c, key):
        raw = jaxsal.gradcam(p, x, c, layer="target")
        return postprocess.upsample(postprocess.gradcam_heatmap(raw), hw, "bilinear")

    def gradient(p, x, c, key):
        return postprocess.reduce_channels(jaxsal.simple_grad(p, x, c), "abs_sum")

    sk = functools.partial
    table = {
        "gradcam": gradcam,
        "gradient": gradient,
        "occlusion": sk(explainers.occlusion, patch=round(scaled(32, size)), stride=round(scaled(16, size)),
                        reference=black, batch=8),
        "rise": sk(explainers.rise, masks=config.rise_masks, cells=7, p=0.5, reference=black,
                   batch=min(100, config.rise_masks)),
        "extremal": sk(explainers.extremal_perturbation, steps=steps, areas=config.extremal_areas,
                       step=round(scaled(7, size)),
                       sigma=scaled(21, size), reference=refs.blur(scaled(20, size))),
        "meaningful": sk(explainers.meaningful_perturbation, steps=steps, mask_size=size // 8,
                         reference=refs.blur(scaled(10, size))),
        "dssr": sk(explainers.dssr, steps=steps, reference=noise),
        "dssr_plus": sk(explainers.dssr_plus, steps=steps, reference=noise,
                        max_pool_size=round(scaled(12, size)), max_pool_pad=round(scaled(6, size)),
                        avg_pool_size=round(scaled(16, size))),
    }  # fmt: skip
    return {k: _as_maps(v) for k, v in table.items()}


def _as_maps(fn):
    def run(p, x, c, key):
        return np.asarray(fn(p, x, c, key=key), np.float64).reshape(x.shape[:3])

    return run


def explanation_set(config: PointingConfig, size: int) -> dict[str, np.ndarray]:
    """Scenes of every pair, each repeated once per class present: x, c, own and other box."""
    xs, cs, own, other, canvas, pair = [], [], [], [], [], []
    for i, (a, b) in enumerate(config.pairs):
        s = composite_scenes("test", classes=(a, b), size=size, n=config.scenes_per_pair,
                             seed=(config.seed, i))  # fmt: skip
        for t in (0, 1):
            xs.append(s.images)
            cs.append(s.labels[:, t])
            own.append(s.boxes[:, t])
            other.append(s.boxes[:, 1 - t])
            canvas.append(s.canvas())
            pair.append(np.full(len(s), i))
    cat = np.concatenate
    return {"x": cat(xs), "c": cat(cs), "own": cat(own), "other": cat(other),
            "canvas": cat(canvas), "pair": cat(pair)}  # fmt: skip


def curves(params, x, c, maps, *, patch: int, key) -> dict[str, np.ndarray]:
    """Deletion (MoRF to the black canvas) and insertion (black canvas filled MoRF) curves."""
    prob = jax.jit(lambda z: jax.nn.softmax(jaxsal.logits(params, z), axis=-1))
    black = jnp.full_like(x, -MEAN / STD)
    h = jnp.asarray(maps)[..., None]
    kw = {"patch": patch, "order": "morf", "key": key}
    deletion = perturbation_curve(prob, x, c, h, reference=black, **kw)
    insertion = perturbation_curve(prob, black, c, h, reference=x, **kw)
    return {"deletion": np.asarray(deletion), "insertion": np.asarray(insertion)}


def output_paths(workdir: Path) -> list[Path]:
    """The output files: plain names if all are free, else timestamped (never overwritten)."""
    paths = [workdir / n for n in NAMES]
    if not any(p.exists() for p in paths):
        return paths
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        suffix = f"-{stamp}" + (f"-{k}" if k else "")
        paths = [workdir / n.replace(".", f"{suffix}.", 1) for n in NAMES]
        if not any(p.exists() for p in paths):
            return paths
    raise FileExistsError(f"no free output name in {workdir}; clean it up")


def run(workdir, config: PointingConfig, *, cache_dir=None, progress: bool = True,
        log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Runs the experiment in `workdir`; returns the results (also written as JSON)."""
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    load = [os.getloadavg()[0]]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir else workdir / "models"
    params, record = train_or_load(cache_dir, config.train, progress=progress)
    log(("loaded" if record["cached"] else "trained") + f" {record['path']}")
    size = config.train.size
    data = explanation_set(config, size)
    x, c = jnp.asarray(data["x"]), jnp.asarray(data["c"])
    logits = np.asarray(jaxsal.logits(params, x))
    top2 = np.argsort(-logits, axis=1)[:, :2]
    tol = pg.scaled_tolerance(size)
    key = jax.random.key(config.seed)
    maps, results = {}, {}
    table = method_table(config, size)
    for i, (name, fn) in enumerate(table.items()):
        w0, c0 = time.perf_counter(), time.process_time()
        maps[name] = fn(params, x, c, jax.random.fold_in(key, i))
        results[name] = {
            "seconds": time.perf_counter() - w0,
            "cpu_seconds": time.process_time() - c0,
        }
        log(f"{name:<12} {results[name]['seconds']:7.1f} s")
    maps["centre"] = np.array(pg.centre_maps(len(x), (size, size)))
    results["centre"] = {"seconds": 0.0, "cpu_seconds": 0.0}
    for name, m in maps.items():
        r = results[name]
        for label, t in (("pointing", tol), ("pointing_0px", 0.0), ("pointing_15px", 15.0)):
            hits = pg.pointing_hits(m, data["own"], tolerance=t)
            r[label] = pg.pointing_accuracy(hits, data["c"])
        disc = pg.class_discrimination(m, data["own"], data["other"])
        r.update({k: float(np.mean(v)) for k, v in disc.items()})
        if name != "centre":
            cur = curves(params, x, c, m, patch=config.curve_patch, key=jax.random.fold_in(key, 99))
            r["deletion_auc"] = float(cur["deletion"].mean())
            r["insertion_auc"] = float(cur["insertion"].mean())
    paths = output_paths(workdir)
    plot(data, maps, paths[2], rows=config.figure_rows)
    out = {
        "config": dataclasses.asdict(config),
        "model": {"path": record["path"], "cached": record["cached"],
                  "train_seconds": record["train_seconds"], "test": record.get("test")},
        "explanations": len(x),
        "class_in_top2": float(np.mean([ci in t for ci, t in zip(data["c"], top2)])),
        "tolerance_px": tol,
        "methods": results,
        "published_voc07": pg.PUBLISHED,
        "figure": paths[2].name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": [load[0], os.getloadavg()[0]],
        "cpu_count": os.cpu_count(),
        "wall_seconds": time.perf_counter() - t_wall,
        "cpu_seconds": time.process_time() - t_cpu,
    }  # fmt: skip
    paths[0].write_text(json.dumps(out, indent=2))
    paths[1].write_text(report(out))
    log(table_text(out))
    log(f"wrote {', '.join(str(p) for p in paths)}")
    return {**out, "paths": [str(p) for p in paths]}


def table_text(out: dict[str, Any]) -> str:
    """The pointing table as Markdown."""
    tol = out["tolerance_px"]
    lines = [
        f"| method | pointing ({tol:.1f} px) | 0 px | 15 px | mass own box | mass other box "
        "| discrimination | peak in other box | deletion AUC | insertion AUC | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["methods"].items():
        d, i = r.get("deletion_auc"), r.get("insertion_auc")
        lines.append(
            f"| {name} | {r['pointing']['overall']:.3f} | {r['pointing_0px']['overall']:.3f} "
            f"| {r['pointing_15px']['overall']:.3f} | {r['own_mass']:.3f} | {r['other_mass']:.3f} "
            f"| {r['discrimination']:.3f} "
            f"| {r['peak_in_other']:.3f} | {'' if d is None else f'{d:.3f}'} "
            f"| {'' if i is None else f'{i:.3f}'} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} |"
        )
    return "\n".join(lines)


def report(out: dict[str, Any]) -> str:
    """The Markdown report."""
    c = out["config"]
    return "\n".join([
        "# Pointing game on two-digit scenes",
        "",
        f"{out['explanations']} explanations ({len(c['pairs'])} class pairs x "
        f"{c['scenes_per_pair']} scenes x 2 classes); optimised masks {c['steps']} steps, "
        f"Extremal areas {c['extremal_areas']}, RISE {c['rise_masks']} masks. "
        "Tolerance 15 px at 224 px scaled to "
        f"{out['tolerance_px']:.1f} px. Explained class in the model's top 2: "
        f"{out['class_in_top2']:.3f}.",
        "",
        table_text(out),
        "",
        "Published VOC07 pointing accuracies (%, all images): "
        + json.dumps(out["published_voc07"]),
        "",
        f"![maps]({out['figure']})",
        "",
        f"Total {out['wall_seconds']:.0f} s wall, {out['cpu_seconds']:.0f} s CPU on "
        f"{out['cpu_count']} cores, {out['date']}, 1-minute load average "
        f"{out['load_average'][0]:.1f} at the start, {out['load_average'][1]:.1f} at the end.",
        "",
    ])  # fmt: skip


def plot(data, maps, path, *, rows: int, title: str | None = None) -> Path:
    """Maps side by side: one row per explanation, own box green, other box red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(data["x"])
    idx = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    cols = 1 + len(maps)
    fig, axes = plt.subplots(len(idx), cols, figsize=(1.3 * cols, 1.35 * len(idx)), squeeze=False)
    for r, i in enumerate(idx):
        panels = [("scene", data["canvas"][i])] + [(k, v[i]) for k, v in maps.items()]
        for j, (name, img) in enumerate(panels):
            ax = axes[r, j]
            lo, hi = np.min(img), np.max(img)
            ax.imshow((img - lo) / (hi - lo + 1e-12), cmap="gray" if j == 0 else "inferno")
            for box, col in ((data["own"][i], "lime"), (data["other"][i], "red")):
                if np.size(box) != 4:
                    continue
                y0, x0, y1, x1 = box
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       edgecolor=col, linewidth=0.6))  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
        axes[r, 0].set_ylabel(f"class {data['c'][i]}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def photo_batch(size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image photos, centre-cropped, resized: ([0, 1] pixels, ImageNet-normalised)."""
    from skimage import data as skdata

    from jaxsal.data.voc import IMAGENET_MEAN, IMAGENET_STD, normalise

    crops = []
    for name in PHOTOS:
        img = getattr(skdata, name)()
        h, w = img.shape[:2]
        s = min(h, w)
        crops.append(img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s])
    x = np.stack([normalise(img, size) for img in crops])
    return np.clip(x * IMAGENET_STD + IMAGENET_MEAN, 0, 1), x


def photos(path, params=None, *, size: int = 112, steps: int = 20, rise_masks: int = 200,
           random_weights: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Every method's map on scikit-image photos, explaining the model's top class.

    Args:
      path: the PNG to write.
      params: a torchvision-architecture model (ImageNet-normalised RGB input);
        default resnet18 with random weights (no pretrained weights can be
        downloaded here: the maps then show the methods, not a trained model).
      size: image side in pixels.
      steps, rise_masks: few iterations and masks keep this cheap.
      random_weights: say so in the figure's title.

    Returns:
      {"classes": top class per photo, "seconds": {method: wall s}, "path": path}.
    """
    from jaxsal.data.voc import IMAGENET_MEAN, IMAGENET_STD

    if params is None:
        params = jaxsal.init("resnet18", jax.random.key(0), num_classes=1000)
    pix, x = photo_batch(size)
    x = jnp.asarray(x, jax.tree.leaves(params.params)[0].dtype)
    c = jnp.argmax(jaxsal.logits(params, x), axis=1)
    config = PointingConfig(steps=steps, rise_masks=rise_masks)
    table = method_table(config, size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    maps, seconds, key = {}, {}, jax.random.key(1)
    for i, (name, fn) in enumerate(table.items()):
        t0 = time.perf_counter()
        maps[name] = fn(params, x, c, jax.random.fold_in(key, i))
        seconds[name] = time.perf_counter() - t0
        log(f"photos {name:<12} {seconds[name]:7.1f} s")
    boxes = np.zeros((len(x), 0, 4), int)
    data = {"x": x, "c": np.asarray(c), "canvas": pix, "own": boxes, "other": boxes}
    weights = "random weights" if random_weights else "given weights"
    try:
        arch = arch_of(params.module)
    except ValueError:
        arch = type(params.module).__name__
    title = f"{arch}, {weights}; {steps} steps, RISE {rise_masks} masks"
    plot(data, maps, path, rows=len(x), title=title)
    return {"classes": np.asarray(c).tolist(), "seconds": seconds, "path": str(path)}


def voc_pointing(params, exs, table: dict[str, Callable], *, tolerance: float = pg.TOLERANCE,
                 key, skip_difficult: bool = False) -> dict[str, dict]:  # fmt: skip
    """The pointing game on VOC examples (`jaxsal.data.voc`), every class present explained.

    Args:
      params: a 20-class model (e.g. TorchRay's VOC-finetuned VGG16 / ResNet50,
        converted with `weights_convert.from_torchvision(..., num_classes=20)`).
      exs: `VocExample`s, all of the same size.
      table: {name: fn(params, x, c, key) -> (N, H, W) maps}, e.g. `method_table`.
      tolerance: pixels (15 at 224 px).
      key: PRNG key.
      skip_difficult: explain only classes with a non-difficult object.

    Returns:
      {name: pointing_accuracy(...) with "seconds"}, the centre baseline included.
    """
    from jaxsal.data.voc import explanation_targets

    targets = explanation_targets(exs, skip_difficult=skip_difficult)
    x = jnp.asarray(np.stack([exs[i].image for i, _, _ in targets]))
    c = jnp.asarray([k for _, k, _ in targets])
    boxes = [b for _, _, b in targets]
    out = {}
    for j, (name, fn) in enumerate(table.items()):
        t0 = time.perf_counter()
        hits = pg.pointing_hits(fn(params, x, c, jax.random.fold_in(key, j)), boxes,
                                tolerance=tolerance)  # fmt: skip
        out[name] = {**pg.pointing_accuracy(hits, c), "seconds": time.perf_counter() - t0}
    centre = pg.centre_maps(len(x), x.shape[1:3])
    out["centre"] = pg.pointing_accuracy(pg.pointing_hits(centre, boxes, tolerance=tolerance), c)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", required=True, help="work directory (never overwritten)")
    ap.add_argument("--cache-dir", default=None, help="model cache (default WORKDIR/models)")
    ap.add_argument("--quick", action="store_true", help="seconds-scale smoke run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument(
        "--photos",
        action="store_true",
        help="also write photos.png: the maps on scikit-image photos (resnet18)",
    )
    ap.add_argument("--photos-only", action="store_true", help="only the photo figure")
    ap.add_argument(
        "--checkpoint",
        default=None,
        help="model for the photos (jaxsal.load); default resnet18, random weights",
    )
    args = ap.parse_args(argv)
    config = quick_config() if args.quick else PointingConfig()
    if not args.photos_only:
        run(args.workdir, config, cache_dir=args.cache_dir, progress=not args.no_progress)
    if args.photos or args.photos_only:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "photos.png"
        if path.exists():
            path = workdir / f"photos-{time.strftime('%Y%m%d-%H%M%S')}.png"
        params = jaxsal.load(args.checkpoint) if args.checkpoint else None
        steps = (4, 50) if args.quick else (20, 200)
        photos(path, params, steps=steps[0], rise_masks=steps[1],
               random_weights=args.checkpoint is None)  # fmt: skip


if __name__ == "__main__":
    main()
