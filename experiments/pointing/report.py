"""The pointing study's report: Markdown tables with intervals, map figures, the results JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.common import fmt, markdown_table, output_names, save_figure, write_json
from experiments.pointing.config import REFERENCED, StudyConfig
from jaxsal import pointing as pg
from jaxsal import viz

NAMES = {"gradcam": "Grad-CAM", "gradient": "gradient", "occlusion": "occlusion", "rise": "RISE",
         "meaningful_perturbation": "Meaningful Perturbation",
         "extremal_perturbation": "Extremal Perturbation", "dssr": "DSSR", "dssr_plus": "DSSR+",
         "centre": "centre baseline", "random": "random baseline"}  # fmt: skip


def cell(summary: dict | None, digits: int = 2) -> str:
    """ "0.91 ± 0.02 [0.88, 0.94]": mean ± sd over seeds, bootstrap 95% interval of the mean."""
    if summary is None:
        return ""
    lo, hi = summary["ci"]
    ci = "" if lo is None or not np.isfinite(lo) else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return fmt(summary, digits) + ci


def method_table(results: dict, config: StudyConfig, key: str, digits: int = 2) -> str:
    """One figure of every method: a column per reference (none for the reference-free ones)."""
    refs = list(config.references)
    rows = []
    for name in config.methods:
        if name in REFERENCED:
            cells = [""] + [cell(results["methods"][f"{name}/{r}"].get(key), digits) for r in refs]
        else:
            cells = [cell(results["methods"][name].get(key), digits)] + [""] * len(refs)
        rows.append([NAMES[name], *cells])
    return markdown_table(["method", "no reference", *refs], rows)


def tie_table(results: dict, config: StudyConfig, kind: str = "pointing") -> str:
    """The figure `kind` of every map set under every tie rule, with the share of tied maps."""
    rows = []
    for e in results["methods"].values():
        name = NAMES[e["method"]] + (f" ({e['reference']})" if e["reference"] else "")
        rows.append([name, cell(e["tied"]),
                     *[cell(e.get(f"{kind}/{rule}")) for rule in config.ties]])  # fmt: skip
    headers = ["maps", "share with tied maxima", *[f"{kind}, {rule}" for rule in config.ties]]
    return markdown_table(headers, rows)


def cost_table(results: dict) -> str:
    rows = [[lab, f"{e['cpu_seconds']['mean']:.0f}"] for lab, e in results["methods"].items()]
    return markdown_table(["maps", "CPU s per seed (mean)"], rows)


def sections(results: dict, config: StudyConfig) -> list[tuple[str, str]]:
    """(title, table) of every table of the report."""
    rule = config.ties[0]
    out = []
    if results["n_single"]:
        out += [
            (f"Single digits: pointing accuracy ({results['tolerance_px']:.1f} px, ties: {rule})",
             method_table(results, config, f"pointing/{rule}")),
            ("Single digits: energy in the box (min-max normalised map)",
             method_table(results, config, "energy")),
            ("Single digits: pointing accuracy under each tie rule",
             tie_table(results, config, "pointing")),
        ]  # fmt: skip
    if results["n_composite"]:
        out += [
            (f"Composites, explaining class A: peak inside A's boxes (ties: {rule})",
             method_table(results, config, f"own_peak/{rule}")),
            (f"Composites, explaining class A: peak inside B's boxes (ties: {rule})",
             method_table(results, config, f"other_peak/{rule}")),
            ("Composites: energy in A's boxes", method_table(results, config, "energy_own")),
            ("Composites: energy in B's boxes", method_table(results, config, "energy_other")),
            ("Composites: discrimination, energy in A / (A + B)",
             method_table(results, config, "discrimination")),
        ]  # fmt: skip
    out.append(("CPU time", cost_table(results)))
    return out


def text_tables(results: dict, config: StudyConfig) -> str:
    """The report's tables, for the log."""
    return "\n\n".join(f"{title}\n\n{table}" for title, table in sections(results, config))


def published_table() -> str:
    """Published VOC07 pointing accuracies (%), labelled with their models and sources."""
    p = pg.PUBLISHED
    cols = ["centre", "gradient", "gradcam", "rise", "extremal_perturbation"]
    rows = [["TorchRay, VGG16 (VOC07-finetuned)", *[p["torchray_vgg16"][c] for c in cols], ""],
            ["TorchRay, ResNet50 (VOC07-finetuned)", *[p["torchray_resnet50"][c] for c in cols],
             ""],
            ["Gu et al. Table 3 (baselines = TorchRay's ResNet50 column; DSSR+ on their ResNet34)",
             *[p["gu2020_table3"][c] for c in cols], p["gu2020_table3"]["dssr_plus_resnet34"]]]  # fmt: skip
    return markdown_table(["source, model", "centre", "gradient", "Grad-CAM", "RISE", "Extremal",
                           "DSSR+"], rows)  # fmt: skip


def maps_figure(path: Path, seed0: dict, data: dict, config: StudyConfig, ref: str | None):
    """Every method's map (reference `ref` for the perturbation methods) on the figure's scenes."""
    from matplotlib.patches import Rectangle

    rows = seed0["figure_rows"]
    maps = {}
    for name in config.methods:
        lab = f"{name}/{ref}" if name in REFERENCED and ref else name
        if lab in seed0["figure"]:
            maps[NAMES[name]] = pg.normalise_maps(seed0["figure"][lab])
    labels = [f"class {data['c'][r]}" for r in rows]
    fig = viz.grid(data["canvas"][rows], maps, row_labels=labels, alpha=0.6, signed=False,
                   figsize=(1.4 * (len(maps) + 1), 1.5 * len(rows)))  # fmt: skip
    axes = np.asarray(fig.axes).reshape(len(rows), -1)
    for r, i in enumerate(rows):
        for ax in axes[r]:
            for boxes, colour in ((data["own"][i], "lime"), (data["other"][i], "red")):
                for y0, x0, y1, x1 in boxes:
                    if y1 > y0:
                        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                               fill=False, ec=colour, lw=0.8))  # fmt: skip
    fig.suptitle(f"reference: {ref or 'none'} (seed 0; explained class's boxes green, the "
                 "other class's red)", fontsize="small")  # fmt: skip
    save_figure(fig, path)


def write(workdir, results: dict, seed0: dict, data: dict, config: StudyConfig):
    """Writes the results JSON, the figures and the Markdown report; returns their paths."""
    results_path, report_path, fig_dir = output_names(
        Path(workdir), ("results.json", "report.md", "figures")
    )
    fig_dir.mkdir(parents=True)
    refs = list(config.references) if any(m in REFERENCED for m in config.methods) else [None]
    figures = []
    for ref in refs:
        name = f"maps-{ref or 'none'}.png"
        maps_figure(fig_dir / name, seed0, data, config, ref)
        figures.append(f"{fig_dir.name}/{name}")
    write_json(results_path, {**results, "figures": figures})
    a = results["accuracy"]
    n_seeds = results["seeds"]
    lines = [
        "# Pointing game, box energy and class discrimination (Gu et al. 2020)", "",
        f"N = {n_seeds} seed(s) (base model and explainer seed s); n = {results['n_single']} "
        f"single-digit and {results['n_composite']} composite explanations per seed "
        f"({config.scenes.split} split; seed s explains scenes of scene seed {config.scenes.seed} + s). "
        "Each cell: mean ± "
        "standard deviation over seeds [bootstrap 95% interval of the mean over the N x n "
        f"pooled explanations]. Tolerance {results['tolerance_px']:.1f} px (15 px at 224 px). "
        f"Base model: top-1 on the single digits {cell(a['single_top1'])}; explained class in "
        f"the top 2 on the composites {cell(a['composite_top2'])}.", "",
        f"Tuning: {config.tuned or 'none recorded'}", "",
        f"Wall time {results['wall_seconds']:.0f} s, CPU time {results['cpu_seconds']:.0f} s.", "",
    ]  # fmt: skip
    for title, table in sections(results, config):
        lines += [f"## {title}", "", table, ""]
    lines += ["## Published VOC07 pointing accuracies (%)", "", published_table(), ""]
    lines += ["## Maps (seed 0)", ""] + [f"![maps]({f})" for f in figures] + [""]
    report_path.write_text("\n".join(lines) + "\n")
    return results_path, report_path, fig_dir
