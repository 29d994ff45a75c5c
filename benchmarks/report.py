"""The throughput benchmark's report: ratios, roofline, targets, Markdown tables, the figure.

One line per (arch, batch, method, precision). Ratios are jaxsal's images per
second over each PyTorch library's in the same precision (bfloat16: jaxsal's
`with_precision("bfloat16")` against the library under `torch.autocast`);
GFLOP/s is the jaxsal program's FLOPs (XLA's cost analysis) over the median
time, on the PyTorch side the same FLOP count over its own time; "% peak" is
that over the run's matmul peak of the same precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.methods import passes

GRADIENT = ("simple_grad", "input_x_grad", "smoothgrad", "integrated_gradients",
            "guided_backprop", "gradcam", "guided_gradcam", "gradcam_plusplus", "deeplift",
            "gradient_shap")  # fmt: skip
FLOOR_METHODS = GRADIENT[:7]  # the methods held to FLOOR_TARGET (one model pass each)
TARGETS = {"gradient": 1.0, "lrp": 2.0, "fooling": 1.0, "fooling_gpu": 2.0}
FLOOR_TARGET = 1.2  # interpreter time / floor time
PEAK_TARGET = 0.85  # floor's GFLOP/s / matmul peak
BF16_TARGET = 1.8  # jaxsal bfloat16 / jaxsal float32
BF16_ARCHS = ("resnet50", "vgg16")


def _key(row):
    return row["arch"], row["batch"], row["method"], row.get("precision", "float32")


def ratios(rows: list[dict], cfg: dict, peaks: dict, *, gpu: bool = False) -> list[dict]:
    """One line per (arch, batch, method, precision): speed-ups, roofline, memory, targets."""
    by = {}
    for row in rows:
        by.setdefault(_key(row), {})[row["library"]] = row
    floor = {(a, b, p): libs["jaxsal"]["median_s"] for (a, b, m, p), libs in by.items()
             if m == "floor" and "jaxsal" in libs}  # fmt: skip
    out = []
    for (arch, batch, method, prec), libs in by.items():
        j = libs.get("jaxsal")
        if j is None:
            continue
        peak = peaks.get(prec, {}).get("gflops", float("nan"))
        line = {"arch": arch, "batch": batch, "method": method, "precision": prec,
                "jaxsal_ips": j["images_per_s"], "compile_s": j["compile_s"],
                "gflop_per_image": j["flops"] / batch / 1e9,
                "gflops": j["flops"] / j["median_s"] / 1e9, "jaxsal_mb": j["peak_mb"],
                "xla_temp_mb": j["xla_temp_mb"], "peer_gflops": {}, "peer_mb": {},
                "peer_error": {}}  # fmt: skip
        line["peak_frac"] = line["gflops"] / peak
        if "jaxsal-xla-conv" in libs:
            line["jaxsal_xla_conv_ips"] = libs["jaxsal-xla-conv"]["images_per_s"]
        for lib, row in libs.items():
            if lib.startswith("jaxsal"):
                continue
            if "error" in row:
                line["peer_error"][lib] = row["error"]
                continue
            line[f"vs_{lib}"] = j["images_per_s"] / row["images_per_s"]
            line["peer_gflops"][lib] = j["flops"] / row["median_s"] / 1e9  # jaxsal's FLOPs
            line["peer_mb"][lib] = row["peak_mb"]
        f, n = floor.get((arch, batch, prec)), passes(method, cfg)
        if f and n:
            line["floor_ratio"] = j["median_s"] / (f * n)
        own = by.get((arch, batch, method, "float32"), {}).get("jaxsal")
        if prec != "float32" and own:
            line["bf16_over_f32"] = j["images_per_s"] / own["images_per_s"]
        line["targets"] = targets(line, gpu)
        out.append(line)
    return out


def targets(line: dict, gpu: bool) -> list[dict]:
    """The targets of issue 18 that apply to this line, each with its value and verdict."""
    method, out = line["method"], []
    kind = "lrp" if method.startswith("lrp") else method.split("/")[0]
    speedups = [v for k, v in line.items() if k.startswith("vs_") and k != "vs_torch"]
    if kind == "fooling":
        speedups = [line["vs_torch"]] if "vs_torch" in line else []
        kind = "fooling_gpu" if gpu else "fooling"
    elif kind in GRADIENT:
        kind = "gradient"
    if kind in TARGETS and speedups:
        out.append({"name": "peer", "target": TARGETS[kind], "value": min(speedups)})
    if method in FLOOR_METHODS and "floor_ratio" in line:
        out.append({"name": "floor", "target": FLOOR_TARGET, "value": line["floor_ratio"],
                    "below": True})  # fmt: skip
    if method == "floor":
        out.append({"name": "peak", "target": PEAK_TARGET, "value": line["peak_frac"]})
    if "bf16_over_f32" in line and line["arch"] in BF16_ARCHS:
        out.append({"name": "bf16", "target": BF16_TARGET, "value": line["bf16_over_f32"]})
    for t in out:
        t["met"] = bool(t["value"] <= t["target"] if t.get("below") else t["value"] >= t["target"])
    return out


def _verdict(t: dict) -> str:
    text = {"peer": f"{t['target']}x", "floor": f"floor <= {t['target']}",
            "peak": f"{t['target']:.0%} peak", "bf16": f"bf16 {t['target']}x"}[t["name"]]  # fmt: skip
    return f"{text} {'met' if t['met'] else 'NOT met'}"


def _num(v, fmt=".3g") -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)


def _peer_mb(mb: dict) -> str:
    """Peak MB of the peers (negative resident-set growth shown as 0), named if several."""
    cells = {k: _num(max(v, 0.0), ".0f") for k, v in mb.items()}
    return (
        "; ".join(f"{k} {v}" for k, v in cells.items())
        if len(cells) > 1
        else "".join(cells.values())
    )


def table(lines: list[dict]) -> str:
    cols = sorted({k for line in lines for k in line if k.startswith("vs_")})
    xla = any("jaxsal_xla_conv_ips" in ln for ln in lines)
    head = ["arch", "batch", "method", "prec", "jaxsal img/s", *(["img/s, XLA conv"] * xla),
            "compile s", "GFLOP/img", "GFLOP/s", "% peak", "peer GFLOP/s (% peak)",
            "MB (XLA temp)", "peer MB", *cols, "floor x", "bf16/f32", "targets"]  # fmt: skip
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ln in lines:
        frac = ln["peak_frac"] / ln["gflops"] if ln["gflops"] else float("nan")
        peer = "; ".join([f"{k} {_num(v)} ({_num(100 * v * frac, '.0f')}%)"
                          for k, v in ln["peer_gflops"].items()]
                         + [f"{k}: failed" for k in ln["peer_error"]])  # fmt: skip
        cells = [ln["arch"], str(ln["batch"]), ln["method"], ln["precision"],
                 _num(ln["jaxsal_ips"]), *([_num(ln.get("jaxsal_xla_conv_ips"))] * xla),
                 _num(ln["compile_s"], ".1f"), _num(ln["gflop_per_image"]), _num(ln["gflops"]),
                 _num(100 * ln["peak_frac"], ".0f"), peer,
                 f"{_num(max(ln['jaxsal_mb'], 0.0), '.0f')} ({_num(ln['xla_temp_mb'], '.0f')})",
                 _peer_mb(ln["peer_mb"]),
                 *(f"{ln[c]:.2f}x" if c in ln else "" for c in cols),
                 _num(ln.get("floor_ratio"), ".2f"), _num(ln.get("bf16_over_f32"), ".2f"),
                 "; ".join(_verdict(t) for t in ln["targets"])]  # fmt: skip
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md)


def peak_table(peaks: dict) -> str:
    md = ["| dtype | peak GFLOP/s | per shape (m x k x n: GFLOP/s) |", "|---|---|---|"]
    for p in peaks.values():
        shapes = ", ".join(f"{s['m']}x{s['k']}x{s['n']}: {s['gflops']:.0f}" for s in p["shapes"])
        md.append(f"| {p['dtype']} | {p['gflops']:.1f} | {shapes} |")
    return "\n".join(md)


def accuracy_table(acc: list[dict]) -> str:
    md = ["| arch | batch | method | max rel err | Spearman (min over images) | loss rel err "
          "| grad rel err (L2) | grad max rel err |", "|" + "---|" * 8]  # fmt: skip
    for a in acc:
        cells = [a["arch"], str(a["batch"]), a["method"], _num(a.get("max_rel_err"), ".2e"),
                 _num(a.get("spearman"), ".4f"), _num(a.get("loss_rel_err"), ".2e"),
                 _num(a.get("grad_rel_err"), ".2e"), _num(a.get("grad_max_rel_err"), ".2e")]  # fmt: skip
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md)


def plot(lines: list[dict], path: Path) -> None:
    """jaxsal's speed-up over its slowest peer per float32 line, with the peer targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [ln for ln in lines if ln["precision"] == "float32"]
    archs = sorted({ln["arch"] for ln in lines})
    fig, axes = plt.subplots(len(archs), 1, figsize=(11, 3.2 * len(archs)), squeeze=False)
    for ax, arch in zip(axes[:, 0], archs):
        sel = [ln for ln in lines if ln["arch"] == arch and ln["method"] != "floor"]
        labels = [f"{ln['method']}\nb{ln['batch']}" for ln in sel]
        best = [min([v for k, v in ln.items() if k.startswith("vs_")] or [np.nan]) for ln in sel]
        peer = [next((t for t in ln["targets"] if t["name"] == "peer"), {}) for ln in sel]
        ax.bar(range(len(sel)), best, color=["C2" if t.get("met") else "C3" for t in peer])
        ax.scatter(range(len(sel)), [t.get("target", np.nan) for t in peer], marker="_", s=300,
                   color="k", label="target")  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sel)), labels, rotation=90, fontsize=6)
        ax.set_ylabel("jaxsal / PyTorch img/s")
        ax.set_title(f"{arch} (float32)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
