"""The trustworthy-CNN study's report: tables with intervals, the paper's claims, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.common import fmt, markdown_table, output_names, save_figure, write_json
from jaxsal import viz

NAMES = {"gradcam": "Grad-CAM", "guided_gradcam": "Guided Grad-CAM"}


def cell(summary: dict, digits: int = 1, *, scale: float = 100.0) -> str:
    """Formats "mean ± sd [lo, hi]": sd over seeds, bootstrap 95% interval over the pooled images."""
    lo, hi = (np.asarray(summary["ci"], float) * scale).tolist()
    return f"{fmt(summary, digits, scale=scale)} [{lo:.{digits}f}, {hi:.{digits}f}]"


def direction(summary: dict) -> int:
    """+1 / -1 when the interval excludes 0 and every seed agrees in sign, else 0."""
    lo, hi = summary["ci"]
    values = np.asarray(summary["values"], float)
    if lo > 0 and (values > 0).all():
        return 1
    if hi < 0 and (values < 0).all():
        return -1
    return 0


def _loss_name(e: dict) -> str:
    if e["method"] is None:
        return "cross-entropy"
    ablation = ("" if e["use_r1"] else ", R1 = 0") + ("" if e["use_r2"] else ", R2 = 0")
    return f"eq. 7, {NAMES[e['method']]}{ablation}"


def classification_table(results: dict) -> str:
    """Accuracy, precision, recall (%) of every head, the chance and base-model rows."""
    c = results["chance"]
    rows = [["chance (1 / classes)", "", "", f"{100 * c['accuracy']:.1f}", "", "", ""],
            ["majority class", "", "", cell(c["majority"]), "", "", ""]]  # fmt: skip
    if "backbone_accuracy" in results:
        rows.append(["base model (its own classifier)", "", "",
                     cell(results["backbone_accuracy"]), "", "", ""])  # fmt: skip
    for name, e in results["models"].items():
        delta = cell(e["delta_accuracy"]) if "delta_accuracy" in e else "(reference)"
        rows.append([name, _loss_name(e), f"{e['lr']:g}", cell(e["accuracy"]),
                     fmt(e["precision"], 1, scale=100.0), fmt(e["recall"], 1, scale=100.0),
                     delta])  # fmt: skip
    headers = ["model", "loss", "lr", "accuracy (%)", "precision (%)", "recall (%)",
               "Δ accuracy vs baseline (points)"]  # fmt: skip
    return markdown_table(headers, rows)


def maps_table(results: dict, method: str, has_boxes: bool) -> str:
    """Post hoc maps of one method: pointing game, energy in box, SSIM to the baseline."""
    rows = []
    if has_boxes:
        c = results["chance"]
        rows.append(["chance: centre pixel / uniform map", "", cell(c["pointing"]),
                     cell(c["energy"]), "", "", "", ""])  # fmt: skip
    for name, e in results["models"].items():
        box = [cell(e[f"{method}/{t}"]) for t in ("pointing", "energy")] if has_boxes else []
        deltas = [cell(e[f"{method}/delta_{t}"]) if f"{method}/delta_{t}" in e else "(reference)"
                  for t in ("pointing", "energy")] if has_boxes else []  # fmt: skip
        ssim = cell(e[f"{method}/ssim"], 3, scale=1.0) if f"{method}/ssim" in e else "(reference)"
        cal = e.get(f"{method}/ssim_minus_calibration")
        mean = cell(e[f"{method}/mean"], 3, scale=1.0)
        rows.append([name, mean, *box, *deltas, ssim, cell(cal, 3, scale=1.0) if cal else ""])
    headers = ["model", "map mean (S)"]
    if has_boxes:
        headers += ["pointing game (%)", "energy in box (%)", "Δ pointing (points)",
                    "Δ energy (points)"]  # fmt: skip
    headers += ["SSIM to baseline", "SSIM − SSIM(2nd baseline)"]
    return markdown_table(headers, rows)


def claims(results: dict, methods) -> list[dict]:
    """The paper's two claims per penalised head: better accuracy, different post hoc maps."""
    out = []
    for name, e in results["models"].items():
        if e["method"] is None:
            continue
        row = {"model": name, "accuracy": direction(e["delta_accuracy"])}
        for m in methods:
            key = f"{m}/ssim_minus_calibration"
            row[m] = -direction(e[key]) if key in e else None  # +1: less similar than calibration
        out.append(row)
    return out


def claims_table(results: dict, methods) -> str:
    words = {1: "yes", -1: "no, the opposite", 0: "not detectable", None: "n/a"}
    rows = [[c["model"], words[c["accuracy"]], *(words[c[m]] for m in methods)]
            for c in claims(results, methods)]  # fmt: skip
    headers = ["model", "higher accuracy than the baseline"] + [
        f"{NAMES[m]} maps further from the baseline than a 2nd baseline's" for m in methods
    ]
    return markdown_table(headers, rows)


def text_tables(results: dict, config) -> str:
    """The report's tables, for the log."""
    boxes = "chance" in results and "energy" in results["chance"]
    parts = [classification_table(results)]
    parts += [maps_table(results, m, boxes) for m in config.methods]
    parts.append(claims_table(results, config.methods))
    return "\n\n".join(parts)


def curves_figure(path: Path, curves: dict) -> None:
    """Training loss and batch accuracy per epoch of every head (mean over seeds)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, c in curves.items():
        epochs = np.arange(1, len(c["loss"]) + 1)
        axes[0].plot(epochs, c["loss"], marker=".", label=name)
        axes[1].plot(epochs, c["accuracy"], marker=".", label=name)
    axes[0].set(xlabel="epoch", ylabel="training loss (each head's own objective)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="training batch accuracy")
    axes[1].legend(fontsize=7)
    save_figure(fig, path)


def maps_figure(path: Path, values: dict, data, names, methods) -> None:
    """Every head's post hoc maps of the first test images (seed 0), boxes drawn."""
    maps = {f"{n}\n{NAMES[m]}": values[f"examples/{n}/{m}"] for m in methods for n in names}
    images = data.display(values["examples/image"])
    fig = viz.grid(images, maps, boxes=values.get("examples/box"), alpha=0.6)
    save_figure(fig, path)


def write(workdir, results: dict, seed0: dict, data, config) -> tuple[Path, Path]:
    """Writes the results JSON, the figures and the Markdown report; returns their paths."""
    results_path, report_path, fig_dir = output_names(
        Path(workdir), ("results.json", "report.md", "figures")
    )
    fig_dir.mkdir(parents=True)
    curves_figure(fig_dir / "loss_curves.png", results["curves"])
    names = [h.name for h in config.heads  # the ablations and the 2nd-init trust heads left out
             if h.use_r1 and h.use_r2 and (h.init == 0 or h.method is None)]  # fmt: skip
    if config.examples:
        maps_figure(fig_dir / "maps.png", seed0["values"], data, names, config.methods)
    write_json(results_path, {**results, "figures": fig_dir.name})
    boxes = data.has_boxes
    n_seeds, n = results["seeds"], results["n"]
    lines = [
        "# Trustworthy CNNs (Halliwell & Lecue): new heads trained with and without the penalty",
        "",
        f"Each cell: mean ± sd over seeds (N = {n_seeds}) [bootstrap 95% interval of the mean "
        f"over the N x n = {n_seeds} x {n} pooled test images]. Differences (Δ) are paired per "
        f"image against `{results['reference']}`. Seed s: backbone seed s (embedded), head "
        "initialisation and batch order seed s. A claim holds when the interval excludes 0 "
        f"and every seed agrees. Wall time {results['wall_seconds']:.0f} s, CPU "
        f"{results['cpu_seconds']:.0f} s.", "",
        f"Tuning: {config.tuned or 'none recorded'}", "",
        "## Classification (test split)", "", classification_table(results), "",
    ]  # fmt: skip
    for m in config.methods:
        lines += [f"## Post hoc {NAMES[m]} maps (true class)", "", maps_table(results, m, boxes),
                  ""]  # fmt: skip
    lines += ["## The paper's direction", "", claims_table(results, config.methods), "",
              "## Training curves (mean over seeds)", "",
              f"![loss curves]({fig_dir.name}/loss_curves.png)", ""]  # fmt: skip
    if config.examples:
        lines += ["## Maps (seed 0, first test images)", "", f"![maps]({fig_dir.name}/maps.png)",
                  ""]  # fmt: skip
    report_path.write_text("\n".join(lines) + "\n")
    return results_path, report_path
