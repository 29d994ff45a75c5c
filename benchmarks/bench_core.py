"""Measurement, the jaxsal side and the report of `benchmarks.throughput`.

A jaxsal computation is jitted; lowering+compilation is timed apart from the
runs, and XLA's own memory analysis is kept beside the measured peak. Peak
memory on CPU is the process's resident-set high-water mark during one call
above its resident set before the call (`/proc/self/clear_refs` resets the
mark), the same measure for JAX and PyTorch; on GPU it is the device
allocator's peak. Times are medians over `reps` runs after `warmup` runs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm import tqdm

import jaxsal
from benchmarks import torch_baselines as tb
from benchmarks.lrp_vs_zennit import best_of
from jaxsal.fooling import objective, trainer
from jaxsal.forward import resolve_layer, select_class
from jaxsal.graph._conv import default_conv, resolve_conv
from jaxsal.lrp.attribution import relevance
from weights_convert import from_torchvision
from weights_convert.torch_reference import to_nchw, torch_model, torchvision

NOISE = ("smoothgrad", "integrated_gradients")
STDEV = 0.5  # absolute SmoothGrad noise, the same for both libraries


def layer_for(arch: str, params) -> str:
    """The Grad-CAM / fooling layer as a torchvision path that exists in both libraries.

    The "target" alias, except DenseNet121, whose target (`denseblock4.cat15`,
    the input of the last dense layer) has no torch module: its block output.
    """
    if arch.startswith("densenet"):
        return "features.denseblock4"
    if arch == "resnet18":  # the tiny preset: a 9x9 map at 72 px
        return "layer2.1"
    return resolve_layer(params, "target")


def rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def peak_of(fn) -> float:
    """Peak memory (MB) one call of fn adds (host RSS on CPU, allocator peak on GPU)."""
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        fn()
        jax_peak = jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0)
        return max(torch.cuda.max_memory_allocated(), jax_peak) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = rss_kb()
    fn()
    return (rss_kb("VmHWM") - before) / 1024


def warm_up(call, warmup: int) -> float:
    """Runs `warmup` calls (at least one), the last under `peak_of`; returns its peak."""
    best_of(call, warmup - 1)
    return peak_of(call)


def summary(times, images) -> dict:
    med = statistics.median(times)
    return {"median_s": med, "times_s": times, "images_per_s": images / med}


def time_jax(fn, args, *, images, warmup, reps, update=None) -> dict:
    """Compiles `fn` (a `jax.jit` function, or one to jit) on args, then times calls.

    With `update`, each call's output becomes the next call's args
    (`args = update(args, out)`): a training step threads its state.
    """
    t = time.perf_counter()
    lowered = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", float("nan")) / 2**20 if mem else float("nan")
    state = list(args)

    def call():
        out = jax.block_until_ready(compiled(*state))
        if update is not None:
            state[:] = update(state, out)
        return out

    peak = warm_up(call, warmup)
    return {**summary(best_of(call, reps), images), "compile_s": compile_s,
            "peak_mb": peak, "xla_temp_mb": temp}  # fmt: skip


def time_torch(fn, *, images, warmup, reps) -> dict:
    def call():
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    peak = warm_up(call, warmup)
    return {**summary(best_of(call, reps), images), "peak_mb": peak}


def jax_method(method: str, cfg: dict, layer: str, composite: str | None = None):
    """`f(params, x, c, key)` running one jaxsal interpreter with the benchmark's settings."""
    if method == "floor":
        return lambda p, x, c, k: jax.grad(lambda x: select_class(jaxsal.logits(p, x), c).sum())(x)
    if method == "lrp":
        return lambda p, x, c, k: relevance(p, x, c, composite=composite)
    core = getattr(jaxsal, method)
    hyper = {
        "smoothgrad": dict(samples=cfg["samples"], stdev=STDEV, chunk=cfg["chunk"]),
        "integrated_gradients": dict(steps=cfg["samples"], chunk=cfg["chunk"]),
        "gradcam": dict(layer=layer),
        "guided_gradcam": dict(layer=layer),
    }.get(method, {})
    return lambda p, x, c, k: core(p, x, c, key=k, **hyper)


def fooling_step_jax(params, method: str, layer: str, lr: float = 1e-5):
    """The fooling study's step (`trainer.make_step` on `objective.loss`) and its first args.

    One device (the benchmark compares one process with one PyTorch process);
    the step donates the optimiser state, so each timed call feeds the next.
    """
    fooling = objective.Fooling(
        kind="location", method=method, lam=1.0, layer=layer, composite="epsilon_plus"
    )
    tx = optax.adam(lr)
    step = trainer.make_step(
        lambda p, p0, b: objective.loss(p, p0, b, fooling), tx,
        mesh=trainer.make_mesh(jax.devices()[:1]),
    )  # fmt: skip
    return step, tx.init(params.params)


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "torch": torch.__version__, "backend": jax.default_backend(),
            "devices": str(jax.devices()), "cpu_affinity": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "conv_backend": resolve_conv(default_conv())}  # fmt: skip
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return info


def tasks(cfg: dict, batch: int) -> list[tuple[str, str | None]]:
    """(method, composite) pairs to time at this batch size."""
    out = []
    for m in ["floor"] + cfg["methods"]:
        if m == "fooling":
            continue
        if m in NOISE and batch not in cfg["noise_batches"]:
            continue
        if m == "lrp":
            out += [("lrp", comp) for comp in cfg["composites"]]
        else:
            out.append((m, None))
    return out


def torch_fns(method, composite, model, arch, xt, ct, layer, cfg) -> dict:
    """{library: callable} of the PyTorch implementations of one method."""
    if method == "floor":
        return {"torch": tb.floor(model, xt, ct)}
    if method == "lrp":
        return {"zennit": tb.zennit(model, arch, xt, ct, composite=composite)}
    fns = {"captum": tb.captum(model, method, xt, ct, layer=layer, samples=cfg["samples"],
                               chunk=cfg["chunk"], stdev=STDEV)}  # fmt: skip
    if method == "gradcam":
        fns["pytorch-grad-cam"] = tb.grad_cam_library(model, xt, ct, layer=layer)
    return fns


def run_arch(arch: str, cfg: dict, bar) -> list[dict]:
    rows = []
    dev = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    model = torch_model(arch, num_classes=cfg["num_classes"], dtype=torch.float32).to(dev)
    params = from_torchvision(arch, {k: v.cpu() for k, v in model.state_dict().items()},
                              dtype=jnp.float32)  # fmt: skip
    layer = layer_for(arch, params)
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    w, r = cfg["warmup"], cfg["reps"]
    for batch in cfg["batches"]:
        x = rng.standard_normal((batch, cfg["size"], cfg["size"], 3)).astype(np.float32)
        c = tb.labels(batch, cfg["num_classes"])
        xj, cj = jnp.asarray(x), jnp.asarray(c)
        xt, ct = to_nchw(x).to(dev), torch.as_tensor(c).to(dev)
        for method, comp in tasks(cfg, batch):
            name = method if comp is None else f"lrp/{comp}"
            bar.set_description(f"{arch} b{batch} {name}")
            base = {"arch": arch, "batch": batch, "method": name}
            fn = jax_method(method, cfg, layer, comp)
            res = time_jax(fn, (params, xj, cj, key), images=batch, warmup=w, reps=r)
            rows.append({**base, "library": "jaxsal", **res})
            if cfg["torch"]:
                for lib, tfn in torch_fns(method, comp, model, arch, xt, ct, layer, cfg).items():
                    rows.append({**base, "library": lib,
                                 **time_torch(tfn, images=batch, warmup=w, reps=r)})  # fmt: skip
            bar.update()
    if "fooling" in cfg["methods"]:
        rows += run_fooling(arch, cfg, model, params, layer, dev, bar)
    return rows


def run_fooling(arch, cfg, model, params, layer, dev, bar) -> list[dict]:
    rows = []
    n = cfg["fooling_batch"]
    x = np.random.default_rng(1).standard_normal((n, cfg["size"], cfg["size"], 3))
    x = x.astype(np.float32)
    y = tb.labels(n, cfg["num_classes"], seed=1)
    batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
    for method in cfg["fooling_methods"]:
        base = {"arch": arch, "batch": n, "method": f"fooling/{method}"}
        # the run's conv backend ("jaxsal"), and XLA's own convolutions beside it
        run_conv = resolve_conv(params.spec.conv)
        backends = [run_conv] + (["xla"] if run_conv != "xla" else [])
        for backend in backends:
            bar.set_description(f"{arch} fooling {method} conv={backend}")
            p = params.with_conv(backend)
            step, opt_state = fooling_step_jax(p, method, layer)
            res = time_jax(
                step, (p, opt_state, p, batch), images=n, warmup=cfg["warmup"],
                reps=cfg["reps"], update=lambda a, out: [out[0], out[1], *a[2:]],
            )  # fmt: skip
            lib = "jaxsal" if backend == backends[0] else "jaxsal-xla-conv"
            rows.append({**base, "library": lib, **res})
        if cfg["torch"]:
            m = torch_model(arch, num_classes=cfg["num_classes"], dtype=torch.float32).to(dev)
            fn = tb.fooling_step(m, arch, to_nchw(x).to(dev), torch.as_tensor(y).to(dev),
                                 method=method, layer=layer)  # fmt: skip
            res = time_torch(fn, images=n, warmup=cfg["warmup"], reps=cfg["reps"])
            rows.append({**base, "library": "torch", **res})
        bar.update()
    return rows


def ratios(rows: list[dict], cfg: dict) -> list[dict]:
    """One line per (arch, batch, method): speed-ups over each PyTorch library, floor ratio."""
    by = {}
    for row in rows:
        by.setdefault((row["arch"], row["batch"], row["method"]), {})[row["library"]] = row
    floor = {(a, b): libs["jaxsal"]["median_s"] for (a, b, m), libs in by.items() if m == "floor"}
    out = []
    for (arch, batch, method), libs in by.items():
        j = libs.get("jaxsal")
        if j is None:
            continue
        line = {"arch": arch, "batch": batch, "method": method,
                "jaxsal_ips": j["images_per_s"], "compile_s": j["compile_s"]}  # fmt: skip
        if "jaxsal-xla-conv" in libs:
            line["jaxsal_xla_conv_ips"] = libs["jaxsal-xla-conv"]["images_per_s"]
        for lib, row in libs.items():
            if not lib.startswith("jaxsal"):
                line[f"vs_{lib}"] = j["images_per_s"] / row["images_per_s"]
        f = floor.get((arch, batch))
        if f and not method.startswith("fooling"):
            passes = cfg["samples"] if method in NOISE else 1
            line["floor_ratio"] = j["median_s"] / (f * passes)
        kind = "lrp" if method.startswith("lrp") else method.split("/")[0]
        target = TARGETS_BY_KIND.get(kind)
        speedups = [v for k, v in line.items() if k.startswith("vs_") and k != "vs_torch"]
        if kind == "fooling":
            speedups = [line.get("vs_torch", float("nan"))]
        if target and speedups:
            line["target"] = target
            line["met"] = bool(min(speedups) >= target)
        if "floor_ratio" in line and method != "floor" and not method.startswith("lrp"):
            line["floor_met"] = bool(line["floor_ratio"] <= FLOOR_TARGET)
        out.append(line)
    return out


TARGETS_BY_KIND = {"simple_grad": 1.5, "gradcam": 1.5, "guided_backprop": 1.5,
                   "smoothgrad": 3.0, "integrated_gradients": 3.0, "lrp": 2.0,
                   "fooling": 1.0}  # fmt: skip
FLOOR_TARGET = 1.2


def table(lines: list[dict]) -> str:
    cols = sorted({k for line in lines for k in line if k.startswith("vs_")})
    xla = any("jaxsal_xla_conv_ips" in ln for ln in lines)
    head = ["arch", "batch", "method", "jaxsal img/s", "compile s", *cols, "floor x", "target"]
    head[4:4] = ["img/s, XLA conv"] if xla else []
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for ln in lines:
        met = "" if "met" not in ln else f"{ln['target']}x {'met' if ln['met'] else 'NOT met'}"
        if "floor_met" in ln:
            met += f"; floor {'met' if ln['floor_met'] else 'NOT met'}"
        cells = [ln["arch"], str(ln["batch"]), ln["method"], f"{ln['jaxsal_ips']:.3g}",
                 f"{ln['compile_s']:.1f}", *(f"{ln[c]:.2f}x" if c in ln else "" for c in cols),
                 f"{ln['floor_ratio']:.2f}" if "floor_ratio" in ln else "", met]  # fmt: skip
        if xla:
            cells.insert(
                4, f"{ln['jaxsal_xla_conv_ips']:.3g}" if "jaxsal_xla_conv_ips" in ln else ""
            )
        md.append("| " + " | ".join(cells) + " |")
    return "\n".join(md)


def plot(lines: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = sorted({ln["arch"] for ln in lines})
    fig, axes = plt.subplots(len(archs), 1, figsize=(11, 3.2 * len(archs)), squeeze=False)
    for ax, arch in zip(axes[:, 0], archs):
        sel = [ln for ln in lines if ln["arch"] == arch and ln["method"] != "floor"]
        labels = [f"{ln['method']}\nb{ln['batch']}" for ln in sel]
        best = [min([v for k, v in ln.items() if k.startswith("vs_")] or [np.nan]) for ln in sel]
        tgt = [ln.get("target", np.nan) for ln in sel]
        ax.bar(range(len(sel)), best, color=["C2" if ln.get("met") else "C3" for ln in sel])
        ax.scatter(range(len(sel)), tgt, marker="_", s=300, color="k", label="target")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sel)), labels, rotation=90, fontsize=6)
        ax.set_ylabel("jaxsal / PyTorch img/s")
        ax.set_title(arch)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def work_dir(out: str) -> Path:
    """The output directory; an existing non-empty one gets a timestamped sibling."""
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = path.with_name(f"{path.name}-{stamp}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_benchmark(cfg: dict, out: str, *, progress: bool = True) -> Path:
    """Runs the grid of `cfg`; writes results.json, results.md, speedups.png under `out`."""
    torchvision()
    path = work_dir(out)
    total = sum(len(tasks(cfg, b)) for b in cfg["batches"]) + len(cfg["fooling_methods"]) * (
        "fooling" in cfg["methods"]
    )
    rows = []
    with tqdm(total=total * len(cfg["archs"]), disable=not progress) as bar:
        for arch in cfg["archs"]:
            rows += run_arch(arch, cfg, bar)
            lines = ratios(rows, cfg)
            result = {"config": cfg, "machine": machine(), "rows": rows, "ratios": lines}
            (path / "results.json").write_text(json.dumps(result, indent=1, default=str))
    md = table(lines)
    print(md)
    (path / "results.md").write_text(f"# Throughput ({cfg['preset']} preset)\n\n{md}\n")
    plot(lines, path / "speedups.png")
    return path
