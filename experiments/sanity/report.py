"""The sanity study's report: Markdown tables over seeds, the papers' figures, the results JSON."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from experiments.common import markdown_table, output_names, save_figure, write_json
from experiments.sanity.findings import INSENSITIVE, SENSITIVE, findings
from experiments.sanity.manipulation import BOUNDS
from jaxsal import postprocess, viz
from jaxsal.methods import METHODS
from jaxsal.sanity import METRICS

METRIC_LABELS = {"spearman_abs": "Spearman abs", "spearman_signed": "Spearman signed",
                 "ssim_abs": "SSIM", "hog_spearman": "HOG"}  # fmt: skip
REGIONS = ("whole", "box")


LABELS = {"simple_grad": "Gradient", "smoothgrad": "SmoothGrad", "vargrad": "VarGrad",
          "integrated_gradients": "Integrated Gradients", "input_x_grad": "Gradient x input",
          "guided_backprop": "Guided Backprop", "gradcam": "Grad-CAM",
          "guided_gradcam": "Guided Grad-CAM", "lrp_epsilon_plus": "LRP epsilon-plus",
          "lrp_epsilon_alpha2_beta1": "LRP epsilon-alpha2-beta1"}  # fmt: skip


def label(name: str) -> str:
    """A method's name in tables and figures (the table's description when not listed)."""
    return LABELS.get(name) or (METHODS[name].description if name in METHODS else name)


def cell(s: dict, digits: int = 2) -> str:
    """ "mean ± sd [lo, hi]" (sd over seeds when N > 1; bootstrap 95% interval over scenes)."""
    if not np.isfinite(s.get("mean", np.nan)):
        return "n/a"
    text = f"{s['mean']:.{digits}f}"
    if s.get("N", 1) > 1 and np.isfinite(s.get("sd", np.nan)):
        text += f" ± {s['sd']:.{digits}f}"
    lo, hi = s["ci"]
    return text + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else "")


def similarity_table(results: dict, get) -> str:
    """Rows: methods; columns: every metric, whole image and box; cells from `get(method)`."""
    headers = ["method"] + [f"{METRIC_LABELS[m]} ({r})" for m in METRICS for r in REGIONS]
    rows = []
    for name, m in results["methods"].items():
        part = get(m)
        rows.append([label(name)] + [cell(part[r][k]) for k in METRICS for r in REGIONS])
    return markdown_table(headers, rows)


def independent_table(results: dict, region: str = "box", metric: str = "spearman_abs") -> str:
    groups = [g[0] for g in results["groups"]]
    rows = [[label(n)] + [cell(s) for s in m["independent"][region][metric]]
            for n, m in results["methods"].items()]  # fmt: skip
    return markdown_table(["method", *groups], rows)


def findings_table(found: dict, test: str) -> str:
    rows = [[label(n), f"{f['mean_r']:.2f}", f["verdict"], f["paper"],
             {True: "yes", False: "no", None: "-"}[f["reproduced"]], f["note"]]
            for n, f in found[test].items()]  # fmt: skip
    return markdown_table(["method", "mean r", "here", "paper", "reproduced", "note"], rows)


def manipulation_table(results: dict) -> str:
    cols = ("spearman_target", "spearman_original", "ssim_target", "ssim_original",
            "max_prob_change", "same_class", "pixel_rms")  # fmt: skip
    rows = []
    for name, by_setting in results["manipulation"].items():
        for setting, e in by_setting.items():
            for kind in ("untouched", "manipulated"):
                rows.append([label(name), setting, kind] + [cell(e[kind][c], 3) for c in cols])
    headers = ["method", "explained with", "input", "Spearman to target", "Spearman to original",
               "SSIM to target", "SSIM to original", "largest softmax change", "class kept",
               "input change (RMS, pixels in [0, 1])"]  # fmt: skip
    return markdown_table(headers, rows)


def _display(x: np.ndarray) -> np.ndarray:
    lo, hi = BOUNDS
    return np.clip((np.asarray(x) - lo) / (hi - lo), 0.0, 1.0)


def cascade_figure(path: Path, seed0: dict, scenes, groups, k: int = 0) -> None:
    """Rows: methods; columns: the trained model, then randomised down to each group."""
    names = list(seed0["methods"])
    steps = ["trained"] + [f"down to {g[0]}" for g in groups[::-1]]
    maps = {}
    for i, step in enumerate(steps):
        stack = np.stack([seed0["methods"][n]["cascade_maps"][i, k] for n in names])
        maps[step] = np.asarray(postprocess.absolute_map(jnp.asarray(stack)))
    images = np.repeat(_display(scenes.images[k : k + 1]), len(names), axis=0)
    fig = viz.grid(images, maps, row_labels=[label(n) for n in names], overlay=False,
                   signed=False, boxes=np.repeat(scenes.boxes[k : k + 1], len(names), axis=0),
                   figsize=(1.3 * (len(steps) + 1), 1.3 * len(names)))  # fmt: skip
    save_figure(fig, path)


def curves_figure(path: Path, results: dict, part: str) -> None:
    """Mean similarity per cascade step (or per independently randomised group)."""
    groups = [g[0] for g in results["groups"]]
    ticks = ["none"] + groups[::-1] if part == "cascading" else groups
    fig = Figure(figsize=(3.2 * len(METRICS), 5.6), layout="constrained")
    axes = fig.subplots(2, len(METRICS), squeeze=False)
    for j, metric in enumerate(METRICS):
        for i, region in enumerate(REGIONS):
            ax = axes[i, j]
            for n, (name, m) in enumerate(results["methods"].items()):
                colour = f"C{n % 10}"
                rows = m[part][region][metric]
                ax.plot([s["mean"] for s in rows], marker=".", color=colour, label=label(name))
                ax.fill_between(range(len(rows)), [s["ci"][0] for s in rows],
                                [s["ci"][1] for s in rows], color=colour, alpha=0.15)  # fmt: skip
                ax.axhline(m["other_scene"][region][metric]["mean"], color=colour, ls=":", lw=0.8)
            ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=6)
            ax.set_title(f"{METRIC_LABELS[metric]}, {region}", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0, -1].legend(fontsize=5)
    fig.suptitle(f"{part} randomisation: similarity to the trained maps (dotted: another scene)",
                 fontsize=9)  # fmt: skip
    save_figure(fig, path)


def manipulation_figure(path: Path, seed0: dict, scenes, name: str, k: int = 0) -> None:
    """Rows: settings; columns: manipulated input, input change, original / target / result."""
    entries = seed0["manipulation"][name]
    x0 = scenes.images[k]
    images, maps = [], {"input change": [], "original map": [], "target map": [],
                        "manipulated map": []}  # fmt: skip
    for e in entries.values():
        images.append(_display(e["x_adv"][k]))
        maps["input change"].append(np.abs(e["x_adv"][k] - x0))
        for kind in ("original", "target", "manipulated"):
            maps[f"{kind} map"].append(e["maps"][kind][k])
    rows = ["ReLU" if s == "relu" else f"beta {s}" for s in entries]
    fig = viz.grid(np.stack(images), {k_: np.stack(v) for k_, v in maps.items()},
                   row_labels=rows, overlay=False, signed=False)  # fmt: skip
    save_figure(fig, path)


def write(workdir, results: dict, seed0: dict, scenes, config) -> tuple[Path, Path]:
    """Writes the results JSON, the figures and the Markdown report; returns their paths."""
    results_path, report_path, fig_dir = output_names(
        workdir, ("results.json", "report.md", "figures")
    )
    fig_dir.mkdir(parents=True)
    found = findings(results)
    results = {**results, "findings": found, "figures": fig_dir.name}
    cascade_figure(fig_dir / "cascade.png", seed0, scenes, results["groups"])
    curves_figure(fig_dir / "cascading.png", results, "cascading")
    curves_figure(fig_dir / "independent.png", results, "independent")
    for name in results["manipulation"]:
        manipulation_figure(fig_dir / f"manipulation-{name}.png", seed0, scenes, name)
    write_json(results_path, results)
    report_path.write_text(text(results, config))
    return results_path, report_path


def text(results: dict, config) -> str:
    """The Markdown report."""
    fig, n_seeds = results["figures"], results["seeds"]
    acc, sh = results["base_model_test_accuracy"], results["shuffled"]

    def step(i):  # the cascade's row i of every method
        return lambda m: {r: {k: v[i] for k, v in m["cascading"][r].items()} for r in REGIONS}

    end, top = step(-1), step(1)
    mc = config.manipulation
    lines = [
        "# Sanity checks (Adebayo et al. 2018) and manipulated explanations (Dombrowski et al. "
        "2019)", "",
        f"N = {n_seeds} seed(s) (seed s: base model s, fresh weights s, shuffled labels s); "
        f"n = {config.scenes} test scenes per seed (n = {mc.scenes} attacked). Cells: mean over "
        "seeds ± standard deviation over seeds (N > 1) [bootstrap 95% interval of the mean over "
        f"the pooled scenes]. Wall time {results['wall_seconds']:.0f} s, CPU "
        f"{results['cpu_seconds']:.0f} s.", "",
        f"Tuning: {config.tuned or 'none recorded'}", "",
        f"Base model test accuracy {cell(acc, 3)}. Shuffled-label model ({sh['steps']} steps): "
        f"training accuracy {cell(sh['train_accuracy'], 3)} on its shuffled labels (fitted: "
        f"{sh['fitted']}), test accuracy {cell(sh['test_accuracy'], 3)} on true labels.", "",
        "Layer groups randomised (input first): "
        + "; ".join(" + ".join(g) for g in results["groups"]) + ".", "",
        "## Model randomisation: fully randomised (cascade end) vs trained", "",
        similarity_table(results, end), "",
        "### After the top group only", "", similarity_table(results, top), "",
        "### Baseline (floor): the trained map of another scene", "",
        similarity_table(results, lambda m: m["other_scene"]), "",
        "### Baseline (reference): an independently trained base model", "",
        (similarity_table(results, lambda m: m["independent_model"]) if n_seeds > 1 else
         "Not measured: it needs two seeds or more (`--seeds 2`; seed s is compared with "
         "base model s + 1)."), "",
        "### Independent randomisation of each group alone (Spearman abs, box)", "",
        independent_table(results), "",
        f"![cascade]({fig}/cascade.png)", "", f"![cascading]({fig}/cascading.png)", "",
        f"![independent]({fig}/independent.png)", "",
        "## Data randomisation: shuffled-label model vs trained", "",
        similarity_table(results, lambda m: m["shuffled_labels"]), "",
        "## Findings", "",
        f"r = (S - floor) / (1 - floor) per metric and region, averaged (floor: another scene); "
        f"insensitive when mean r >= {INSENSITIVE}, sensitive below {SENSITIVE} (this project's "
        "thresholds).", "",
        "### Model randomisation", "", findings_table(results["findings"], "model"), "",
        "### Data randomisation", "", findings_table(results["findings"], "data"), "",
        "## Manipulation (Dombrowski et al.)", "",
        f"Adam lr {mc.attack.learning_rate:g} on pixel values, {mc.attack.steps} steps, weights "
        f"{mc.attack.expl_weight:g} / {mc.attack.output_weight:g}; ReLU attacked through the "
        f"beta {mc.attack.beta_start:g} -> {mc.attack.beta_end:g} surrogate, each beta attacked "
        "directly. Target: the next scene's map under the same setting. 'untouched' rows: "
        "x' = x (the baseline).", "",
        manipulation_table(results), "",
    ]  # fmt: skip
    for name, by_setting in results["manipulation"].items():
        mse = ", ".join(f"{s} {e['expl_mse_first']:.2e} -> {e['expl_mse_last']:.2e} "
                        f"({e['seconds']:.0f} s)" for s, e in by_setting.items())  # fmt: skip
        lines += [f"{label(name)}: explanation MSE during the attack: {mse}.", "",
                  f"![manipulation {name}]({fig}/manipulation-{name}.png)", ""]  # fmt: skip
    return "\n".join(lines) + "\n"
