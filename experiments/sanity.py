"""Sanity checks (Adebayo et al.) and explanation manipulation (Dombrowski et al.).

    python -m experiments.sanity --workdir runs/sanity [--cache-dir DIR] [--quick]
    python -m experiments.sanity --workdir runs/sanity_vgg --checkpoint DIR   # torchvision port

Embedded default: the small CNN of `jaxsal.training.train_or_load` (default
TrainConfig, cached in --cache-dir, default WORKDIR/models) on digit test
scenes. With --checkpoint, a `jaxsal.load` model on scikit-image photos
(chelsea, coffee, astronaut; normalised like torchvision). Writes into the work
directory (or a timestamped sub-directory when it holds results already):
`cascading.png` (rows: methods; columns: randomised down to layer k),
`similarity.png` (cascading and independent curves, data randomisation),
`manipulation.png`, `results.json` (every figure) and `report.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import jaxsal
from experiments.sanity_config import SanityConfig, get_config
from jaxsal import postprocess
from jaxsal.data import MEAN, STD, batches, digit_scenes
from jaxsal.lrp.attribution import relevance
from jaxsal.sanity import (
    cascading_masks,
    explanation_map,
    fresh_params,
    independent_masks,
    manipulate,
    manipulation_scores,
    parameter_layers,
    randomized_maps,
    shuffled_labels,
    similarities,
)
from jaxsal.training import eval_scenes, fit, make_optimizer, train_or_load

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def method_table(config: SanityConfig, *, ig_steps: int | None = None) -> dict:
    """name -> explain(params, x, c, key): raw attributions of the input's shape."""
    steps = config.ig_steps if ig_steps is None else ig_steps
    # noisy samples per pass: the whole stack for the digits, 10 at a time for 224 px photos
    sg_chunk = 10 if config.checkpoint and config.samples % 10 == 0 else None
    vg_chunk = 5 if config.checkpoint and config.var_samples % 5 == 0 else None

    def cam(p, x, c, k):  # Grad-CAM upsampled to the input, as in the paper's figures
        return postprocess.upsample(jaxsal.gradcam(p, x, c, layer="target", relu=True),
                                    x.shape[1:3], "bilinear")  # fmt: skip

    table = {
        "gradient": lambda p, x, c, k: jaxsal.simple_grad(p, x, c),
        "gradient_x_input": lambda p, x, c, k: jaxsal.input_x_grad(p, x, c),
        "smoothgrad": lambda p, x, c, k: jaxsal.smoothgrad(
            p, x, c, key=k, samples=config.samples, chunk=sg_chunk),
        "vargrad": lambda p, x, c, k: jaxsal.vargrad(
            p, x, c, key=k, samples=config.var_samples, chunk=vg_chunk),
        "integrated_gradients": lambda p, x, c, k: jaxsal.integrated_gradients(
            p, x, c, steps=steps),
        "guided_backprop": lambda p, x, c, k: jaxsal.guided_backprop(p, x, c),
        "gradcam": cam,
        "guided_gradcam": lambda p, x, c, k: jaxsal.guided_gradcam(
            p, x, c, layer="target", interpolation="nearest"),
    }  # fmt: skip
    for name in config.lrp_composites:
        table[f"lrp_{name}"] = (lambda comp: lambda p, x, c, k: relevance(p, x, c, composite=comp))(
            name
        )
    if config.methods is not None:
        unknown = [m for m in config.methods if m not in table]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(table)}")
        table = {m: table[m] for m in config.methods}
    return table


def photo_batch(names, size: int) -> np.ndarray:
    """scikit-image photos, centre-cropped, resized to size x size, normalised like torchvision."""
    import skimage.data
    import skimage.transform

    out = []
    for name in names:
        img = getattr(skimage.data, name)()[..., :3] / 255.0
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(skimage.transform.resize(img, (size, size), anti_aliasing=True))
    return ((np.stack(out) - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def load_setup(config: SanityConfig, cache_dir: Path, progress: bool) -> dict:
    """The model, the images, their classes, display canvases and the valid input range."""
    if config.checkpoint is not None:
        params = jaxsal.load(config.checkpoint)
        x = jnp.asarray(photo_batch(config.photos, config.image_size))
        canvas = np.clip(np.asarray(x) * IMAGENET_STD + IMAGENET_MEAN, 0, 1)
        lo, hi = (0 - IMAGENET_MEAN) / IMAGENET_STD, (1 - IMAGENET_MEAN) / IMAGENET_STD
        bounds = (
            jnp.asarray(lo.reshape(1, 1, 1, 3), x.dtype),
            jnp.asarray(hi.reshape(1, 1, 1, 3), x.dtype),
        )
        c = jnp.argmax(jaxsal.logits(params, x), -1)
        return dict(params=params, x=x, c=c, canvas=canvas, bounds=bounds, labels=None,
                    model={"checkpoint": config.checkpoint})  # fmt: skip
    params, record = train_or_load(cache_dir, config.train, progress=progress)
    test = eval_scenes("test", config.train)
    x = jnp.asarray(test.images[: config.images])
    c = jnp.asarray(test.labels[: config.images])
    bounds = ((0 - MEAN) / STD, (1 - MEAN) / STD)  # the normalised black and white pixel
    return dict(params=params, x=x, c=c, canvas=test.canvas()[: config.images], bounds=bounds,
                labels=test.labels[: config.images].tolist(),
                model={"path": record["path"], "cached": record["cached"],
                       "test_accuracy": record["test"]["accuracy"]})  # fmt: skip


def shuffled_model(config: SanityConfig, params0, cache_dir: Path, progress: bool):
    """The same architecture trained on shuffled labels (data randomisation), cached."""
    tc = config.train
    path = (cache_dir / f"shuffled-{tc.key()}-{config.shuffled_steps}-{config.seed}").absolute()
    if path.exists():
        return jaxsal.load(path), json.loads((path / "shuffled.json").read_text())
    scenes = digit_scenes("train", size=tc.size, seed=tc.seed, n=tc.n_train, noise=tc.noise)
    scenes = dataclasses.replace(scenes, labels=shuffled_labels(scenes.labels, seed=config.seed))
    data = batches(scenes, tc.batch_size, shuffle=True, seed=config.seed, epochs=None)
    start = jaxsal.init(tc.arch, jax.random.key(tc.seed + 1))
    tx = make_optimizer(tc, config.shuffled_steps)
    params, losses = fit(start, data, tx, steps=config.shuffled_steps, progress=progress,
                         desc="shuffled labels")  # fmt: skip
    train_acc = jaxsal.training.evaluate(params, scenes)["accuracy"]
    info = {"steps": config.shuffled_steps, "final_loss": float(np.mean(losses[-10:])),
            "shuffled_train_accuracy": train_acc}  # fmt: skip
    jaxsal.save(path, params)
    (path / "shuffled.json").write_text(json.dumps(info))
    return params, info


def mean_scores(a, b) -> dict:
    s = similarities(a, b)
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in s.items()}


def run_randomization(setup, table, config, key, progress):
    """Cascading and independent randomisation maps and similarity to the trained model's."""
    params, x, c = setup["params"], setup["x"], setup["c"]
    layers = parameter_layers(params)
    fresh = fresh_params(params, jax.random.fold_in(key, 1))
    masks = np.concatenate([cascading_masks(len(layers)), independent_masks(len(layers))])
    n_casc = len(layers) + 1
    maps, scores, seconds = {}, {}, {}
    for name, explain in tqdm(table.items(), desc="randomisation", disable=not progress):
        t0 = time.perf_counter()
        out = np.asarray(randomized_maps(params, x, c, explain, masks, key=key, layers=layers,
                                         fresh=fresh))  # fmt: skip
        seconds[name] = time.perf_counter() - t0
        maps[name] = out[:n_casc]
        scores[name] = {
            "cascading": [mean_scores(out[0], m) for m in out[:n_casc]],
            "independent": [mean_scores(out[0], m) for m in out[n_casc:]],
        }
    return layers, maps, scores, seconds


def run_manipulation(setup, config, key, progress):
    """Attack each method's explanation (target: the next image's map); judge with and without
    beta-smoothing."""
    params, x, c, bounds = setup["params"], setup["x"], setup["c"], setup["bounds"]
    table = method_table(config, ig_steps=config.attack_ig_steps)
    order = np.roll(np.arange(x.shape[0]), -1)
    results, figures = {}, {}
    for name in config.attack_methods:
        explain, jitted = table[name], jax.jit(table[name])  # jitted: judging (one per beta)
        attack = dataclasses.replace(config.attack, traced_beta=not name.startswith("lrp"))
        target = explanation_map(jitted(params, x[order], c[order], key))
        t0 = time.perf_counter()
        x_adv, log = manipulate(params, x, target, explain, bounds=bounds, config=attack, c=c,
                                key=key, progress=progress, desc=f"attack {name}")  # fmt: skip
        entry = {"seconds": time.perf_counter() - t0, "expl_mse_first": float(log["expl_mse"][0]),
                 "expl_mse_last": float(log["expl_mse"][-1]), "judged_by": {}}  # fmt: skip
        fig = {"x_adv": np.asarray(x_adv), "maps": {}}
        for beta in (None,) + tuple(config.defence_betas):
            model = params.with_beta(beta)
            tgt = explanation_map(jitted(model, x[order], c[order], key))
            s = manipulation_scores(model, x, x_adv, tgt, jitted, c=c, key=key, bounds=bounds)
            entry["judged_by"][str(beta or "relu")] = {k: float(v.mean()) for k, v in s.items()}
            fig["maps"][beta] = {
                "original": np.asarray(explanation_map(jitted(model, x, c, key))),
                "target": np.asarray(tgt),
                "manipulated": np.asarray(explanation_map(jitted(model, x_adv, c, key))),
            }
        if name in config.defence_methods:  # the attacker knows beta and attacks it directly
            entry["direct_attack_on_beta"] = {}
            for beta in config.defence_betas:
                model = params.with_beta(beta)
                tgt = explanation_map(jitted(model, x[order], c[order], key))
                direct = dataclasses.replace(attack, beta_start=None)
                xb, _ = manipulate(model, x, tgt, explain, bounds=bounds, config=direct, c=c,
                                   key=key, progress=progress, desc=f"attack {name} beta={beta}")  # fmt: skip
                s = manipulation_scores(model, x, xb, tgt, jitted, c=c, key=key, bounds=bounds)
                entry["direct_attack_on_beta"][str(beta)] = {
                    k: float(v.mean()) for k, v in s.items()
                }
        results[name], figures[name] = entry, fig
    return results, figures


def output_dir(workdir: Path) -> Path:
    """The work directory, or a fresh timestamped sub-directory if it holds results already."""
    if not (workdir / "results.json").exists():
        return workdir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        out = workdir / (f"run-{stamp}" + (f"-{k}" if k else ""))
        if not out.exists():
            return out
    raise FileExistsError(f"no free output directory in {workdir}")


def run(workdir, config: SanityConfig, *, cache_dir=None, progress=True, log=print) -> dict:
    """Runs both studies and writes the figures, results.json and report.md; returns the results."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    workdir = Path(workdir)
    cache_dir = Path(cache_dir) if cache_dir else workdir / "models"
    out = output_dir(workdir)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(config.seed)
    setup = load_setup(config, cache_dir, progress)
    table = method_table(config)
    layers, maps, scores, seconds = run_randomization(setup, table, config, key, progress)
    data_rand = None
    if config.checkpoint is None:
        shuffled, info = shuffled_model(config, setup["params"], cache_dir, progress)
        data_rand = {"training": info, "scores": {}}
        for name, explain in table.items():
            jitted = jax.jit(explain)
            a = jitted(setup["params"], setup["x"], setup["c"], key)
            b = jitted(shuffled, setup["x"], setup["c"], key)
            data_rand["scores"][name] = mean_scores(a, b)
    manip, manip_figs = run_manipulation(setup, config, key, progress)
    results = {
        "config": dataclasses.asdict(config),
        "model": setup["model"],
        "classes": np.asarray(setup["c"]).tolist(),
        "layers": layers,
        "randomization": scores,
        "randomization_seconds": seconds,
        "data_randomization": data_rand,
        "manipulation": manip,
        "figures": ["cascading.png", "similarity.png", "manipulation.png"],
    }
    plot_cascade(setup["canvas"], maps, layers, out / "cascading.png")
    plot_curves(scores, layers, data_rand, out / "similarity.png")
    plot_manipulation(setup["canvas"], manip_figs, config.defence_betas, out / "manipulation.png")
    results["wall_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = time.process_time() - cpu0
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(write_report(results))
    log(
        f"wrote {out}/results.json, report.md and figures in {results['wall_seconds']:.0f} s "
        f"({results['cpu_seconds']:.0f} CPU s)"
    )
    return {**results, "out": str(out)}


def _show(ax, img, title=None, cmap="gray", vmin=None, vmax=None):
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _abs(m):  # (N, H, W, C) -> image 0's absolute map in [0, 1]
    return np.asarray(postprocess.absolute_map(jnp.asarray(m[:1])))[0, ..., 0]


def plot_cascade(canvas, maps, layers, path):
    """Rows: methods; columns: the input, the trained model, then randomised down to layer k."""
    import matplotlib.pyplot as plt

    names, cols = list(maps), len(layers) + 2
    fig, axes = plt.subplots(len(names), cols, figsize=(1.1 * cols, 1.1 * len(names)),
                             squeeze=False)  # fmt: skip
    for i, name in enumerate(names):
        _show(axes[i, 0], canvas[0], "input" if i == 0 else None)
        axes[i, 0].set_ylabel(name, fontsize=6, rotation=0, ha="right")
        for k in range(len(layers) + 1):
            title = ("trained" if k == 0 else layers[-k]) if i == 0 else None
            _show(axes[i, k + 1], _abs(maps[name][k]), title, cmap="gray", vmin=0, vmax=1)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_curves(scores, layers, data_rand, path):
    """Mean similarity to the trained model's maps: cascading (solid), independent (dashed)."""
    import matplotlib.pyplot as plt

    metrics = list(next(iter(scores.values()))["cascading"][0])
    fig, axes = plt.subplots(2, len(metrics), figsize=(3.2 * len(metrics), 6), squeeze=False)
    for j, metric in enumerate(metrics):
        for name, s in scores.items():
            axes[0, j].plot([r[metric] for r in s["cascading"]], marker=".", label=name)
            axes[1, j].plot([r[metric] for r in s["independent"]], "--", marker=".", label=name)
        axes[0, j].set_xticks(range(len(layers) + 1), ["none"] + layers[::-1], rotation=90,
                              fontsize=6)  # fmt: skip
        axes[1, j].set_xticks(range(len(layers)), layers, rotation=90, fontsize=6)
        axes[0, j].set_title(f"cascading: {metric}", fontsize=8)
        axes[1, j].set_title(f"independent: {metric}", fontsize=8)
    if data_rand:
        text = ", ".join(f"{n} {v['spearman_abs']:.2f}" for n, v in data_rand["scores"].items())
        fig.suptitle(f"data randomisation, Spearman abs: {text}", fontsize=6)
    axes[0, -1].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_manipulation(canvas, figs, betas, path):
    """Per method: input, manipulated input, then original / target / manipulated maps for
    ReLU and each beta."""
    import matplotlib.pyplot as plt

    kinds = ("original", "target", "manipulated")
    cols = 2 + 3 * (1 + len(betas))
    fig, axes = plt.subplots(len(figs), cols, figsize=(1.1 * cols, 1.2 * len(figs)),
                             squeeze=False)  # fmt: skip
    for i, (name, f) in enumerate(figs.items()):
        x_adv = f["x_adv"][0]
        _show(axes[i, 0], canvas[0], "input" if i == 0 else None)
        axes[i, 0].set_ylabel(name, fontsize=6, rotation=0, ha="right")
        adv = (
            x_adv[..., 0] * STD + MEAN
            if x_adv.shape[-1] == 1
            else x_adv * IMAGENET_STD + IMAGENET_MEAN
        )
        _show(axes[i, 1], np.clip(adv, 0, 1), "manipulated" if i == 0 else None)
        for b, beta in enumerate((None,) + tuple(betas)):
            for k, kind in enumerate(kinds):
                m = f["maps"][beta][kind][0, ..., 0]
                title = f"{kind[:6]} {'relu' if beta is None else f'b={beta:g}'}"
                _show(axes[i, 2 + 3 * b + k], m, title if i == 0 else None, cmap="hot")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(results: dict) -> str:
    """The Markdown report: tables of the measured numbers."""
    lines = ["# Sanity checks and explanation manipulation", "",
             f"Model: `{results['model']}`; layers (input first): {', '.join(results['layers'])}.",
             "", "## Cascading randomisation (similarity to the trained model's maps)", "",
             "Mean over images after randomising all layers (last cascade step) and after the "
             "top layer only; Spearman abs / signed, SSIM, HOG Spearman.", "",
             "| method | top layer: sp. abs | all: sp. abs | all: sp. signed | all: SSIM | "
             "all: HOG | seconds |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in results["randomization"].items():
        top, last = s["cascading"][1], s["cascading"][-1]
        lines.append(f"| {name} | {top['spearman_abs']:.3f} | {last['spearman_abs']:.3f} | "
                     f"{last['spearman_signed']:.3f} | {last['ssim_abs']:.3f} | "
                     f"{last['hog_spearman']:.3f} | {results['randomization_seconds'][name]:.1f} |")  # fmt: skip
    dr = results.get("data_randomization")
    if dr:
        lines += ["", "## Data randomisation (shuffled labels)", "", f"Training: `{dr['training']}`",
                  "", "| method | sp. abs | sp. signed | SSIM | HOG |", "|---|---|---|---|---|"]  # fmt: skip
        for name, v in dr["scores"].items():
            lines.append(f"| {name} | {v['spearman_abs']:.3f} | {v['spearman_signed']:.3f} | "
                         f"{v['ssim_abs']:.3f} | {v['hog_spearman']:.3f} |")  # fmt: skip
    lines += ["", "## Manipulation (Dombrowski et al.)", "",
              f"Attack: `{results['config']['attack']}`.", "",
              "Each row judges the same manipulated inputs with the ReLU model or with its "
              "beta-smoothed explanation (defence); 'direct' rows attack that beta itself.", "",
              "| method | judged by | Spearman target | Spearman original | SSIM target | "
              "SSIM original | MSE target | MSE original | max softmax change | same class | "
              "pixel MSE |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    notes = []
    for name, e in results["manipulation"].items():
        rows = list(e["judged_by"].items())
        rows += [(f"direct attack b={b}", v) for b, v in e.get("direct_attack_on_beta", {}).items()]
        for judge, v in rows:
            lines.append(f"| {name} | {judge} | {v['spearman_target']:.3f} | "
                         f"{v['spearman_original']:.3f} | {v['ssim_target']:.3f} | "
                         f"{v['ssim_original']:.3f} | {v['mse_target']:.3g} | "
                         f"{v['mse_original']:.3g} | {v['max_prob_change']:.3g} | "
                         f"{v['same_class']:.2f} | {v.get('pixel_mse', float('nan')):.3g} |")  # fmt: skip
        notes.append(f"- {name}: explanation MSE on the surrogate {e['expl_mse_first']:.3g} -> "
                     f"{e['expl_mse_last']:.3g}; {e['seconds']:.0f} s.")  # fmt: skip
    lines += ["", *notes, "", f"Wall time: {results['wall_seconds']:.0f} s, CPU time "
              f"{results['cpu_seconds']:.0f} s.", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.sanity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--workdir", default="runs/sanity", help="work directory (reused)")
    parser.add_argument("--cache-dir", default=None, help="model cache (default WORKDIR/models)")
    parser.add_argument("--checkpoint", default=None, help="jaxsal.load directory (photos)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    parser.add_argument("--attack-steps", type=int, default=None, help="override attack steps")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    config = get_config(quick=args.quick, checkpoint=args.checkpoint)
    if args.attack_steps is not None:
        attack = dataclasses.replace(config.attack, steps=args.attack_steps)
        config = dataclasses.replace(config, attack=attack)
    if args.methods:
        methods = tuple(args.methods.split(","))
        attacked = tuple(m for m in config.attack_methods if m in methods) or methods[:1]
        config = dataclasses.replace(config, methods=methods, attack_methods=attacked)
    return run(args.workdir, config, cache_dir=args.cache_dir, progress=not args.no_progress)


if __name__ == "__main__":
    main()
