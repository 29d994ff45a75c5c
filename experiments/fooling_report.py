"""The fooling study's report: results JSON, Markdown tables and PNG figures.

`write` puts `results.json`, `report.md` and `figures/` into the work
directory; when any of them exists already, it writes
`results-<stamp>.json`, `report-<stamp>.md` and `figures-<stamp>/` beside
them instead, so nothing is ever overwritten.

Figures: per fooling run, sample images with every interpreter's map of the
original and of the fooled model (the paper's figures 2 and 3); the training
curves; the AOPC curves (figure 4a); the noise curves (figure 4b).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.fooling.objective import heatmap_of

SIGNED = ("lrp",)


def output_names(workdir: Path, *, now: float | None = None) -> tuple[Path, Path, Path]:
    """(results JSON, report, figure directory): plain names when all are free, else stamped."""
    plain = (workdir / "results.json", workdir / "report.md", workdir / "figures")
    if not any(p.exists() for p in plain):
        return plain
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for k in range(1000):
        s = f"-{stamp}" + (f"-{k}" if k else "")
        names = (workdir / f"results{s}.json", workdir / f"report{s}.md", workdir / f"figures{s}")
        if not any(p.exists() for p in names):
            return names
    raise FileExistsError(f"no free output name in {workdir}; clean it up")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _upsample(h: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h = np.asarray(h)[..., 0]
    fy, fx = size[0] // h.shape[1], size[1] // h.shape[2]
    return np.kron(h, np.ones((1, fy, fx))) if fy > 1 or fx > 1 else h


def _display(h: np.ndarray, signed: bool) -> np.ndarray:
    if signed:
        top = np.abs(h).max(axis=(1, 2), keepdims=True)
        return h / np.maximum(top, 1e-12)
    h = np.maximum(h, 0)
    return h / np.maximum(h.max(axis=(1, 2), keepdims=True), 1e-12)


def map_figure(path: Path, images: np.ndarray, columns: list[tuple[str, np.ndarray, bool]]) -> None:
    """A grid: one row per image; the image, then one column per (title, maps, signed)."""
    plt = _plt()
    n, cols = len(images), 1 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.35 * n + 0.3), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], cmap="gray" if images.ndim == 3 else None, vmin=0, vmax=1)
        for j, (title, maps, signed) in enumerate(columns, start=1):
            axes[i, j].imshow(maps[i], cmap="bwr" if signed else "jet",
                              vmin=-1 if signed else 0, vmax=1, interpolation="nearest")  # fmt: skip
            if i == 0:
                axes[i, j].set_title(title, fontsize=6)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=6)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _maps(params, x, c, fooling, method):
    fn = jax.jit(lambda p, xx, cc: heatmap_of(p, xx, cc, fooling, method))
    return np.asarray(fn(params, jnp.asarray(x), jnp.asarray(c)))


def run_maps_figure(path, params0, params, fooling, data, config) -> None:
    """Every evaluation interpreter's map before and after one fooling, on sample images."""
    k = config.eval.sample_images
    columns = []
    if fooling.kind == "active":
        x = data.fool_test()[:k]
        methods = [m for m in config.eval.methods if m in ("gradcam", "lrp_t")] or [fooling.method]
        for m in methods:
            for c in fooling.classes:
                for tag, p in (("orig", params0), ("fooled", params)):
                    h = _upsample(_maps(p, x, np.full((len(x),), c), fooling, m), x.shape[1:3])
                    columns.append((f"{m} c={c}\n{tag}", _display(h, m in SIGNED), m in SIGNED))
    else:
        test = data.test()
        x, y = test["image"][:k], test["label"][:k]
        for m in config.eval.methods:
            for tag, p in (("orig", params0), ("fooled", params)):
                h = _upsample(_maps(p, x, y, fooling, m), x.shape[1:3])
                columns.append((f"{m}\n{tag}", _display(h, m in SIGNED), m in SIGNED))
    map_figure(path, data.display(x), columns)


def aopc_figure(path: Path, runs: dict) -> None:
    """AOPC_k curves of each run: original / fooled model x original / fooled / random order."""
    plt = _plt()
    names = [n for n, r in runs.items() if "aopc" in r]
    if not names:
        return
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    styles = {"original": "-", "fooled": "--"}
    colours = {"original_map": "tab:blue", "fooled_map": "tab:red", "random": "tab:gray"}
    for ax, name in zip(axes.flat, names, strict=False):
        for model, curves in runs[name]["aopc"].items():
            for order, curve in curves.items():
                ax.plot(curve, styles[model], color=colours[order], lw=1,
                        label=f"{model} model, {order.replace('_', ' ')}")  # fmt: skip
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("patches removed", fontsize=7)
        ax.set_ylabel("AOPC", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def history_figure(path: Path, workdir: Path, runs: dict) -> None:
    """Cross-entropy and penalty per fine-tuning step of each run."""
    import json

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    for name in runs:
        record = Path(workdir) / "runs" / name / "run.json"
        if not record.exists():
            continue
        hist = json.loads(record.read_text())["history"]
        for ax, key in zip(axes, ("ce", "penalty"), strict=True):
            ax.plot([h[key] for h in hist], lw=0.8, label=name)
            ax.set_title(key, fontsize=8)
    axes[1].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def noise_figure(path: Path, noise: dict) -> None:
    """Top-1 and FSR against the weight-noise level, fooled and original model."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for name, style in (("fooled", "-o"), ("original", "--s")):
        rows = noise[name]
        levels = [r["level"] for r in rows]
        axes[0].plot(levels, [r["top1"] for r in rows], style, ms=3, label=f"{name} model")
        for m in rows[0]["fsr"]:
            axes[1].plot(levels, [r["fsr"][m] for r in rows], style, ms=3, label=f"{name}, {m}")
    axes[0].set_title("Top-1 accuracy", fontsize=8)
    axes[1].set_title(f"FSR ({noise['run']})", fontsize=8)
    for ax in axes:
        ax.set_xlabel("noise level (x std of each weight array)", fontsize=7)
        ax.legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def text_tables(results: dict) -> str:
    """The FSR / accuracy table and the transfer matrix as Markdown."""
    runs = results["runs"]
    if not runs:
        return "no fooling runs"
    methods = list(next(iter(runs.values()))["fooled"]["fsr"])
    o = results["original"]
    lines = [f"Original model: Top-1 {o['top1']:.3f}, Top-5 {o['top5']:.3f}.", "",
             "| run | lam | lr | steps | Top-1 | Top-5 | " + " | ".join(f"FSR {m}" for m in methods) + " |",
             "|---" * (6 + len(methods)) + "|"]  # fmt: skip
    for name, r in runs.items():
        f, b = r["fooled"], r["original"]
        cells = [f"{f['fsr'][m]:.2f} ({b['fsr'][m]:.2f})" for m in methods]
        lines.append(f"| {name} | {r['lam']:g} | {r['lr']:g} | {r['steps']} | {f['top1']:.3f} | "
                     f"{f['top5']:.3f} | " + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "FSR of the fooled model (of the original in brackets); a column whose "
              "interpreter is the run's own is the matched case, the others are the transfer matrix."]  # fmt: skip
    aopc = {n: r["aopc"] for n, r in runs.items() if "aopc" in r}
    if aopc:
        lines += ["", "| run (final AOPC) | " + " | ".join(
            f"{m} model, {o_} order" for m in ("original", "fooled")
            for o_ in ("original_map", "fooled_map", "random")) + " |", "|---" * 7 + "|"]  # fmt: skip
        for n, a in aopc.items():
            vals = [a[m][o_][-1] for m in ("original", "fooled")
                    for o_ in ("original_map", "fooled_map", "random")]  # fmt: skip
            lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(lines)


def analyses_text(results: dict) -> str:
    """Markdown of the optional analyses."""
    out = []
    if "noise" in results:
        nz = results["noise"]
        out += [f"## Gaussian noise on the weights ({nz['run']})", "",
                "| model | level | Top-1 | Top-5 | FSR |", "|---|---|---|---|---|"]  # fmt: skip
        for name in ("fooled", "original"):
            for r in nz[name]:
                fsr = ", ".join(f"{m} {v:.2f}" for m, v in r["fsr"].items())
                out.append(
                    f"| {name} | {r['level']:g} | {r['top1']:.3f} | {r['top5']:.3f} | {fsr} |"
                )
        out += ["", "![noise](FIG/noise.png)", ""]
    if "adversarial" in results:
        ad = results["adversarial"]
        out += [f"## Free adversarial training (eps {ad['eps']}, m = {ad['replays']}, "
                f"{ad['steps']} minibatches), then {ad['run']['kind']}/{ad['run']['method']} "
                "fooling on FGSM cross-entropy", "",
                "| model | Top-1 | Top-5 | PGD Top-1 | FSR |", "|---|---|---|---|---|"]  # fmt: skip
        for name in ("original", "robust", "robust_fooled"):
            r = ad[name]
            fsr = ", ".join(f"{m} {v:.2f}" for m, v in r["fsr"].items())
            out.append(
                f"| {name} | {r['top1']:.3f} | {r['top5']:.3f} | {r['adv_top1']:.3f} | {fsr} |"
            )
        out.append("")
    if "smoothgrad" in results:
        sg = results["smoothgrad"]
        out += [f"## SmoothGrad fooling ({sg['run']['kind']}, lam {sg['run']['lam']}, "
                f"{sg['run']['steps']} steps, {sg['run']['samples']} samples)", "",
                "| model | Top-1 | Top-5 | FSR |", "|---|---|---|---|"]  # fmt: skip
        for name in ("original", "fooled"):
            r = sg[name]
            fsr = ", ".join(f"{m} {v:.2f}" for m, v in r["fsr"].items())
            out.append(f"| {name} | {r['top1']:.3f} | {r['top5']:.3f} | {fsr} |")
        out += ["", "![smoothgrad](FIG/maps-smoothgrad.png)", ""]
    return "\n".join(out)


def write(workdir, results, params0, fooled, data, config) -> tuple[Path, Path]:
    """Writes the results JSON, the figures and the Markdown report; returns their paths."""
    from experiments.fooling_study import write_json

    workdir = Path(workdir)
    results_path, report_path, fig_dir = output_names(workdir)
    fig_dir.mkdir(parents=True)
    for name, (params, fooling) in fooled.items():
        run_maps_figure(fig_dir / f"maps-{name}.png", params0, params, fooling, data, config)
    if "smoothgrad" in results:
        from experiments.fooling_study import RunConfig, load_params

        run = RunConfig(**results["smoothgrad"]["run"])
        sg = load_params(workdir / "analyses" / "runs" / run.label / "model", params0)
        cfg_eval = type(config.eval)(
            **{**config.eval.__dict__, "methods": ("smoothgrad", "simple_grad")}
        )
        run_maps_figure(fig_dir / "maps-smoothgrad.png", params0, sg,
                        run.fooling(config.data.classes), data,
                        type(config)(**{**config.__dict__, "eval": cfg_eval}))  # fmt: skip
    aopc_figure(fig_dir / "aopc.png", results["runs"])
    history_figure(fig_dir / "history.png", workdir, results["runs"])
    if "noise" in results:
        noise_figure(fig_dir / "noise.png", results["noise"])
    results = {**results, "figures": fig_dir.name}
    write_json(results_path, results)
    fig = fig_dir.name
    lines = ["# Fooling interpretations by model manipulation (Heo et al. 2019)", "",
             f"Wall time {results['wall_seconds']:.0f} s, CPU time {results['cpu_seconds']:.0f} s "
             f"(this process). Figures in `{fig}/`, every number in `{results_path.name}`.", "",
             "## FSR and accuracy", "", text_tables(results), ""]  # fmt: skip
    if any("aopc" in r for r in results["runs"].values()):
        lines += ["## AOPC", "", "Solid: original model, dashed: fooled model; blue: patches "
                  "removed by the original map, red: by the fooled map, grey: random order.", "",
                  f"![aopc]({fig}/aopc.png)", ""]  # fmt: skip
    lines += [
        "## Training",
        "",
        f"![history]({fig}/history.png)",
        "",
        "## Maps before and after",
        "",
    ]
    for name in fooled:
        lines += [f"### {name}", "", f"![{name}]({fig}/maps-{name}.png)", ""]
    lines.append(analyses_text(results).replace("FIG/", f"{fig}/"))
    report_path.write_text("\n".join(lines) + "\n")
    return results_path, report_path
