"""The fooling study's report: Markdown tables over seeds, figures, the results JSON."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import (
    fmt,
    markdown_table,
    output_names,
    save_figure,
    summarize,
    write_json,
)
from jaxsal import viz
from jaxsal.fooling import heatmap_of

SIGNED = ("lrp",)
ORDERS = ("original_map", "fooled_map", "random")


def _headline(kind: str) -> str:
    from experiments.fooling.study import headline

    return headline(kind)


def _pct(summary: dict) -> str:
    return fmt(summary, 1, scale=100.0)


def main_table(results: dict) -> str:
    """Accuracy and the matched case's FSR, calibrated and with the paper's intervals."""
    o = results["original"]
    rows = []
    for name, r in results["runs"].items():
        key = f"{r['method']}/{_headline(r['kind'])}"
        rows.append([name, f"{r['lam']:g}", f"{r['lr']:g}", r["steps"], _pct(o["top1"]),
                     _pct(r["top1"]), fmt(r["top1_drop"], 2, scale=100.0),
                     fmt(r["fsr"][key], 2), fmt(r["fsr_original"][key], 2),
                     fmt(r["fsr_paper"][key], 2), fmt(r["fsr_paper_original"][key], 2)])  # fmt: skip
    headers = ["run", "λ", "lr", "steps", "Top-1 before (%)", "Top-1 after (%)",
               "drop (points)", "FSR", "FSR original", "FSR (paper's R_I)",
               "FSR original (paper's R_I)"]  # fmt: skip
    return markdown_table(headers, rows)


def transfer_table(results: dict, methods) -> str:
    """FSR of every fooled model with every method (calibrated intervals); original in brackets."""
    rows = []
    for name, r in results["runs"].items():
        t = _headline(r["kind"])
        cells = [f"{fmt(r['fsr'][f'{m}/{t}'], 2)} ({r['fsr_original'][f'{m}/{t}']['mean']:.2f})"
                 for m in methods]  # fmt: skip
        rows.append([name, *cells])
    return markdown_table(["run", *methods], rows)


def active_table(results: dict, methods) -> str:
    """Active fooling: FSR per class for the rank correlation and the box swap score."""
    rows = []
    for name, r in results["runs"].items():
        if r["kind"] != "active":
            continue
        for m in methods:
            cells = [f"{fmt(r['fsr'][f'{m}/{t}'], 2)} ({r['fsr_original'][f'{m}/{t}']['mean']:.2f})"
                     for t in ("spearman_c1", "spearman_c2", "swap_c1", "swap_c2")]  # fmt: skip
            rows.append([name, m, *cells])
    headers = ["run", "method", "FSR c1 (rank corr.)", "FSR c2 (rank corr.)", "FSR c1 (box swap)",
               "FSR c2 (box swap)"]  # fmt: skip
    return markdown_table(headers, rows) if rows else ""


def aopc_table(results: dict) -> str:
    rows = []
    for name, r in results["runs"].items():
        if "aopc" in r:
            rows.append([name] + [f"{r['aopc'][m][o][-1]:.3f}" for m in ("original", "fooled")
                                  for o in ORDERS])  # fmt: skip
    headers = ["run"] + [f"{m} model, {o.replace('_', ' ')}" for m in ("original", "fooled")
                         for o in ORDERS]  # fmt: skip
    return markdown_table(headers, rows) if rows else ""


def text_tables(results: dict) -> str:
    """The tables of the report, for the log."""
    methods = next(iter(results["runs"].values()))["fsr"].keys() if results["runs"] else []
    methods = list(dict.fromkeys(k.split("/")[0] for k in methods))
    return "\n\n".join(t for t in (main_table(results), transfer_table(results, methods),
                                   active_table(results, methods), aopc_table(results)) if t)  # fmt: skip


def maps_figure(path: Path, params0, params, fooling, data, methods, k: int):
    """Each method's map before and after one fooling, overlaid on sample test images."""
    if fooling.kind == "active":
        x = data.composites("test", fooling.classes)["image"][:k]
        cols = [(m, c) for m in methods if m in ("gradcam", "lrp_t") for c in fooling.classes]
    else:
        ev = data.split("test")
        x, cols = ev["image"][:k], [(m, None) for m in methods]
    y = data.split("test")["label"][:k]
    maps = {}
    for m, c in cols:
        cc = np.full((len(x),), c) if c is not None else y
        for tag, p in (("original", params0), ("fooled", params)):
            fn = jax.jit(lambda p, xx, c_, m=m: heatmap_of(p, xx, c_, fooling, m))
            h = np.asarray(fn(p, jnp.asarray(x), jnp.asarray(cc)))
            maps[f"{m}{'' if c is None else f' c={c}'}\n{tag}"] = h
    fig = viz.grid(data.display(x), maps, alpha=0.55)
    save_figure(fig, path)


def aopc_figure(path: Path, runs: dict) -> None:
    from matplotlib.figure import Figure

    names = [n for n, r in runs.items() if "aopc" in r]
    if not names:
        return
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    colours = {"original_map": "tab:blue", "fooled_map": "tab:red", "random": "tab:gray"}
    for ax, name in zip(axes.flat, names, strict=False):
        for model, style in (("original", "-"), ("fooled", "--")):
            for order in ORDERS:
                ax.plot(runs[name]["aopc"][model][order], style, color=colours[order], lw=1,
                        label=f"{model} model, {order.replace('_', ' ')}")  # fmt: skip
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("patches removed", fontsize=7)
        ax.set_ylabel("AOPC", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=5)
    fig.tight_layout()
    save_figure(fig, path)


def analyses_text(results: dict) -> str:
    """The analyses (one table row per seed)."""
    out = []
    for s, nz in enumerate(results.get("noise", [])):
        rows = [[name, f"{r['level']:g}", f"{r['top1']:.3f}",
                 ", ".join(f"{m} {v:.2f}" for m, v in r["fsr"].items())]
                for name in ("fooled", "original") for r in nz[name]]  # fmt: skip
        out += [f"### Weight noise on {nz['run']} (seed {s})", "",
                markdown_table(["model", "noise level", "Top-1", "FSR (paper's R_I)"], rows), ""]  # fmt: skip
    for s, ad in enumerate(results.get("adversarial", [])):
        rows = [[name, f"{ad[name]['top1']:.3f}", f"{ad[name]['pgd_top1']:.3f}",
                 ", ".join(f"{m} {v:.2f}" for m, v in ad[name]["fsr"].items())]
                for name in ("original", "robust", "robust_fooled")]  # fmt: skip
        out += [f"### Free adversarial training (eps {ad['eps']}, m = {ad['replays']}) and "
                f"{ad['run']['kind']}/{ad['run']['method']} fooling of the robust model "
                f"(seed {s})", "",
                markdown_table(["model", "Top-1", "PGD Top-1", "FSR (paper's R_I)"], rows), ""]  # fmt: skip
    adv = results.get("adversarial", [])
    if len(adv) > 1:

        def over_seeds(values):  # shares in [0, 1]: three digits
            return fmt(summarize(values))

        rows = [[name, over_seeds([a[name]["top1"] for a in adv]),
                 over_seeds([a[name]["pgd_top1"] for a in adv]),
                 ", ".join(f"{m} {over_seeds([a[name]['fsr'][m] for a in adv])}"
                           for m in adv[0][name]["fsr"])]
                for name in ("original", "robust", "robust_fooled")]  # fmt: skip
        n = results.get("config", {}).get("data", {}).get("n_test") or "all the"
        out += [f"### Adversarial training and fooling: mean ± sd over N = {len(adv)} seeds "
                f"(n = {n} test images each)", "",
                markdown_table(["model", "Top-1", "PGD Top-1", "FSR (paper's R_I)"], rows), ""]  # fmt: skip
    for s, sg in enumerate(results.get("smoothgrad", [])):
        rows = [[name, f"{sg[name]['top1']:.3f}",
                 ", ".join(f"{m} {v:.2f}" for m, v in sg[name]["fsr"].items())]
                for name in ("original", "fooled")]  # fmt: skip
        out += [f"### SmoothGrad Location fooling (seed {s})", "",
                markdown_table(["model", "Top-1", "FSR (paper's R_I)"], rows), ""]  # fmt: skip
    return "\n".join(out)


def write(workdir, results: dict, seed0: dict, data, config) -> tuple[Path, Path]:
    """Writes the results JSON, the figures and the Markdown report; returns their paths."""
    workdir = Path(workdir)
    results_path, report_path, fig_dir = output_names(
        workdir, ("results.json", "report.md", "figures")
    )
    fig_dir.mkdir(parents=True)
    methods = list(config.eval.methods)
    for name, (params, fooling) in seed0["fooled"].items():
        maps_figure(fig_dir / f"maps-{name}.png", seed0["params0"], params, fooling, data,
                    methods, config.eval.sample_images)  # fmt: skip
    aopc_figure(fig_dir / "aopc.png", results["runs"])
    results = {**results, "figures": fig_dir.name}
    write_json(results_path, results)
    fig = fig_dir.name
    n_seeds = results["seeds"]
    lines = [
        "# Fooling interpretations by model manipulation (Heo et al. 2019)", "",
        f"{n_seeds} seed(s); each cell is the mean ± standard deviation over seeds (N = "
        f"{n_seeds}); n = {_n(results)} test images per seed (composites for Active). FSR uses "
        "intervals calibrated on validation data so that the original model passes each test "
        f"for at most {config.eval.calibration_level:.0%} of validation images"
        + ("" if config.eval.calibrate else " (calibration OFF: the paper's intervals)")
        + "; the paper's intervals beside them. Active classes "
        f"{tuple(results['classes'])}. Wall time {results['wall_seconds']:.0f} s.", "",
        f"Tuning: {config.tuned or 'none recorded'}", "",
        "## Accuracy and FSR of the matched cases", "", main_table(results), "",
        "## Transfer matrix (FSR; the original model's in brackets)", "",
        transfer_table(results, methods), "",
    ]  # fmt: skip
    act = active_table(results, methods)
    if act:
        lines += ["## Active fooling per class", "", act, ""]
    if aopc_table(results):
        lines += ["## AOPC (mean over seeds, final value)", "", aopc_table(results), "",
                  f"![aopc]({fig}/aopc.png)", ""]  # fmt: skip
    lines += ["## Maps before and after (seed 0)", ""]
    for name in seed0["fooled"]:
        lines += [f"### {name}", "", f"![{name}]({fig}/maps-{name}.png)", ""]
    analyses = analyses_text(results)
    if analyses:
        lines += ["## Analyses", "", analyses]
    report_path.write_text("\n".join(lines) + "\n")
    return results_path, report_path


def _n(results: dict) -> str:
    for r in results["runs"].values():
        for v in r["fsr"].values():
            return str(v.get("n", "?"))
    return "?"
