"""The run of `benchmarks.throughput`: every method, batch and precision on both sides.

For each architecture the torch model (random torchvision weights) is
converted to jaxsal; for each batch, method and precision ("float32", and
"bfloat16": jaxsal's `params.with_precision("bfloat16")`, PyTorch under
`torch.autocast`) the jaxsal program is compiled and timed
(`benchmarks.measure`), then each PyTorch library implementing the method.
The bfloat16 maps are compared with the float32 ones at each method's first
batch, and the fooling step's loss and gradient at the first fooling batch
(`benchmarks.precision`). `results.json` is rewritten after every
measurement, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
from tqdm import tqdm

from benchmarks import report
from benchmarks import torch_baselines as tb
from benchmarks.measure import machine, matmul_peak, on_gpu, time_jax, time_torch
from benchmarks.methods import (
    PERTURBATION,
    fooling_step_jax,
    jax_method,
    layer_for,
    tasks,
    torch_fns,
)
from benchmarks.precision import fooling_accuracy, map_accuracy
from jaxsal.graph._conv import resolve_conv
from weights_convert import from_torchvision
from weights_convert.torch_reference import to_nchw, torch_model, torchvision


def _precision(prec: str) -> str | None:
    return None if prec == "float32" else prec


class Run:
    """The rows, accuracy records and peaks of one run, written to `path/results.json`."""

    def __init__(self, cfg: dict, path: Path, bar):
        self.cfg, self.path, self.bar = cfg, path, bar
        self.rows, self.accuracy, self.peaks = [], [], {}
        self.dev = "cuda" if torch.cuda.is_available() and on_gpu() else "cpu"

    def save(self) -> list[dict]:
        lines = report.ratios(self.rows, self.cfg, self.peaks, gpu=on_gpu())
        result = {"config": self.cfg, "machine": machine(), "peaks": self.peaks,
                  "rows": self.rows, "ratios": lines, "accuracy": self.accuracy}  # fmt: skip
        (self.path / "results.json").write_text(json.dumps(result, indent=1, default=str))
        return lines

    def torch_rows(self, base: dict, fns: dict, prec: str, *, images: int, reps: int):
        for lib, fn in fns.items():
            if prec != "float32":
                fn = tb.autocast(fn, self.dev)
            res = time_torch(fn, images=images, warmup=self.cfg["warmup"], reps=reps)
            self.rows.append({**base, "library": lib, **res})

    def arch(self, arch: str) -> None:
        cfg = self.cfg
        model = torch_model(arch, num_classes=cfg["num_classes"], dtype=torch.float32).to(self.dev)
        params = from_torchvision(arch, {k: v.cpu() for k, v in model.state_dict().items()},
                                  dtype=jnp.float32)  # fmt: skip
        layer = layer_for(arch, params)
        rng = np.random.default_rng(0)
        key = jax.random.key(0)
        compared = set()
        for batch in cfg["batches"]:
            x = rng.standard_normal((batch, cfg["size"], cfg["size"], 3)).astype(np.float32)
            c = tb.labels(batch, cfg["num_classes"])
            xj, cj = jnp.asarray(x), jnp.asarray(c)
            xt, ct = to_nchw(x).to(self.dev), torch.as_tensor(c).to(self.dev)
            for method, comp in tasks(cfg, arch, batch):
                name = method if comp is None else f"lrp/{comp}"
                reps = cfg["perturbation_reps"] if method in PERTURBATION else cfg["reps"]
                jm = jax_method(method, cfg, layer, comp)
                ref = None
                for prec in cfg["precisions"]:
                    self.bar.set_description(f"{arch} b{batch} {name} {prec}")
                    base = {"arch": arch, "batch": batch, "method": name, "precision": prec}
                    p = params.with_precision(_precision(prec))
                    res, out = time_jax(jm.fn, (p, xj, cj, key, *jm.extra), images=batch,
                                        warmup=cfg["warmup"], reps=reps, one_pass=jm.one_pass)  # fmt: skip
                    self.rows.append({**base, "library": "jaxsal", **res})
                    if cfg["torch"]:
                        fns = torch_fns(method, comp, model, arch, xt, ct, layer, cfg)
                        self.torch_rows(base, fns, prec, images=batch, reps=reps)
                    if prec == "float32":
                        ref = out
                    elif ref is not None and name not in compared:
                        self.accuracy.append({**base, **map_accuracy(ref, out)})
                    self.bar.update()
                    self.save()
                compared.add(name)
        if "fooling" in cfg["methods"]:
            self.fooling(arch, params, layer)

    def fooling(self, arch: str, params, layer: str) -> None:
        cfg = self.cfg
        run_conv = resolve_conv(params.spec.conv)
        for i, n in enumerate(cfg["fooling_batches"]):
            x = np.random.default_rng(1).standard_normal((n, cfg["size"], cfg["size"], 3))
            x = x.astype(np.float32)
            y = tb.labels(n, cfg["num_classes"], seed=1)
            batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
            for method in cfg["fooling_methods"]:
                loss_fn = None
                for prec in cfg["precisions"]:
                    base = {"arch": arch, "batch": n, "method": f"fooling/{method}",
                            "precision": prec}  # fmt: skip
                    # the run's conv backend, and in float32 XLA's own convolutions beside it
                    extra = cfg["xla_conv"] and run_conv != "xla" and prec == "float32"
                    for backend in [run_conv] + ["xla"] * extra:
                        self.bar.set_description(f"{arch} fooling {method} {prec} conv={backend}")
                        p = params.with_conv(backend).with_precision(_precision(prec))
                        step, opt_state, loss_fn = fooling_step_jax(p, method, layer)
                        res, _ = time_jax(
                            step, (p, opt_state, batch, p), images=n, warmup=cfg["warmup"],
                            reps=cfg["reps"], update=lambda a, out: [out[0], out[1], *a[2:]],
                        )  # fmt: skip
                        lib = "jaxsal" if backend == run_conv else "jaxsal-xla-conv"
                        self.rows.append({**base, "library": lib, **res})
                    if cfg["torch"]:
                        m = torch_model(arch, num_classes=cfg["num_classes"], dtype=torch.float32)
                        fn = tb.fooling_step(m.to(self.dev), arch, to_nchw(x).to(self.dev),
                                             torch.as_tensor(y).to(self.dev), method=method,
                                             layer=layer)  # fmt: skip
                        self.torch_rows(base, {"torch": fn}, prec, images=n, reps=cfg["reps"])
                    self.bar.update()
                    self.save()
                low = [q for q in cfg["precisions"] if q != "float32"]
                if i == 0 and cfg["accuracy"] and low and "float32" in cfg["precisions"]:
                    self.bar.set_description(f"{arch} fooling {method} accuracy")
                    acc = fooling_accuracy(loss_fn, params.with_conv(run_conv), batch, low=low[0])
                    self.accuracy.append({"arch": arch, "batch": n, "method": f"fooling/{method}",
                                          "precision": low[0], **acc})  # fmt: skip
                    self.save()


def total_tasks(cfg: dict) -> int:
    per = sum(len(tasks(cfg, a, b)) for a in cfg["archs"] for b in cfg["batches"])
    if "fooling" in cfg["methods"]:
        per += len(cfg["archs"]) * len(cfg["fooling_batches"]) * len(cfg["fooling_methods"])
    return per * len(cfg["precisions"])


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
    with tqdm(total=total_tasks(cfg), disable=not progress) as bar:
        run = Run(cfg, path, bar)
        biggest = max(cfg["batches"] + cfg["fooling_batches"])
        for prec in cfg["precisions"]:
            bar.set_description(f"matmul peak {prec}")
            run.peaks[prec] = matmul_peak(prec, batches=(1, biggest))
        for arch in cfg["archs"]:
            run.arch(arch)
        lines = run.save()
    md = (f"{report.table(lines)}\n\nMatmul peak (jax.numpy, same process):\n\n"
          f"{report.peak_table(run.peaks)}\n")  # fmt: skip
    if run.accuracy:
        md += f"\nbfloat16 against float32:\n\n{report.accuracy_table(run.accuracy)}\n"
    print(md)
    (path / "results.md").write_text(f"# Throughput ({cfg['preset']} preset)\n\n{md}")
    report.plot(lines, path / "speedups.png")
    return path
