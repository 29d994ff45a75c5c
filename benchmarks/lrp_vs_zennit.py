"""LRP on CPU: jaxsal against Zennit, same models, same machine, same run.

For each architecture: one LRP map at the input (batch 8, 224 px, float32,
EpsilonPlus with Zennit's canonizers / jaxsal's BatchNorm folding) and one
gradient with respect to all parameters of an LRP_T Location penalty (the
fooling paper's target layer), timed in jaxsal (compiled; compile time
reported apart) and in Zennit (eager PyTorch; second order through
`create_graph` and `Composite.inactive`). Weights are random (torchvision's
initialisation, BatchNorm statistics randomised), converted to jaxsal.

Run from the repository root (prints a table, writes JSON):

    python -m benchmarks.lrp_vs_zennit                       # vgg16, resnet50, batch 8, 224 px
    python -m benchmarks.lrp_vs_zennit --size 96 --batch 2   # a quick local variant
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsal.fooling import location_mask, location_penalty
from jaxsal.lrp import attribute as lrp
from jaxsal.postprocess import lrp_t_heatmap
from weights_convert import from_torchvision
from weights_convert.torch_reference import to_nchw, torch_model, torchvision

TARGET = {"vgg16": "features.27", "resnet50": "layer4.1"}  # the models' "target" aliases


def best_of(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def jaxsal_times(arch, params, x, c, repeats):
    def penalty(p):
        return location_penalty(
            lrp_t_heatmap(lrp(p, x, c, composite="epsilon_plus", layer="target"))
        )

    def run_map():
        return lrp(params, x, c, composite="epsilon_plus").block_until_ready()

    t = time.perf_counter()
    run_map()
    map_first = time.perf_counter() - t
    map_times = best_of(run_map, repeats)

    grad = jax.jit(jax.grad(penalty))
    t = time.perf_counter()
    jax.block_until_ready(grad(params))
    grad_first = time.perf_counter() - t
    grad_times = best_of(lambda: jax.block_until_ready(grad(params)), repeats)
    return {"map": map_times, "map_first_call": map_first,
            "penalty_grad": grad_times, "penalty_grad_first_call": grad_first}  # fmt: skip


def zennit_times(arch, model, x, c, repeats):
    from zennit.composites import EpsilonPlus
    from zennit.torchvision import ResNetCanonizer

    canonizers = [ResNetCanonizer()] if arch.startswith("resnet") else []
    composite = EpsilonPlus(canonizers=canonizers)
    xt = to_nchw(x).requires_grad_()
    idx = torch.arange(xt.shape[0])
    ct = torch.as_tensor(np.asarray(c))
    layer = dict(model.named_modules())[TARGET[arch]]

    def start(out):
        g = torch.zeros_like(out)
        g[idx, ct] = out[idx, ct]
        return g

    def run_map():
        out = model(xt)
        (r,) = torch.autograd.grad(out, xt, start(out.detach()))
        return r

    def run_grad():
        feats = {}
        handle = layer.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
        try:
            out = model(xt)
            (r,) = torch.autograd.grad(out, feats["a"], start(out), create_graph=True)
        finally:
            handle.remove()
        h = torch.relu(r.sum(1, keepdim=True))
        h = h - h.amin((1, 2, 3), keepdim=True)
        h = h / (h.amax((1, 2, 3), keepdim=True) + 1e-8)
        m = torch.as_tensor(location_mask(h.shape[-2], h.shape[-1]), dtype=h.dtype)
        loss = ((m - h) ** 2).mean()
        with composite.inactive():
            return torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)

    with composite.context(model):
        map_times = best_of(run_map, repeats + 1)[1:]
        grad_times = best_of(run_grad, repeats + 1)[1:]
    return {"map": map_times, "penalty_grad": grad_times}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench_results/lrp_vs_zennit.json")
    args = parser.parse_args(argv)

    torchvision()
    rng = np.random.default_rng(0)
    results = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads(), "jax": jax.__version__,
                    "torch": torch.__version__, "jax_devices": str(jax.devices())},
        "batch": args.batch, "size": args.size, "dtype": "float32",
        "composite": "epsilon_plus", "models": {},
    }  # fmt: skip
    for arch in args.archs:
        model = torch_model(arch, num_classes=1000, dtype=torch.float32)
        params = from_torchvision(arch, model.state_dict(), dtype=jnp.float32)
        x = rng.standard_normal((args.batch, args.size, args.size, 3)).astype(np.float32)
        c = rng.integers(0, 1000, args.batch)
        z = zennit_times(arch, model, x, c, args.repeats)
        j = jaxsal_times(arch, params, jnp.asarray(x), jnp.asarray(c), args.repeats)
        results["models"][arch] = {"jaxsal": j, "zennit": z}

    print(f"\nLRP on CPU, batch {args.batch}, {args.size} px, float32, EpsilonPlus (seconds)")
    head = (
        f"{'model':10} {'what':14} {'jaxsal':>9} {'zennit':>9} {'speed-up':>9} {'jaxsal 1st':>11}"
    )
    print(head)
    print("-" * len(head))
    for arch, r in results["models"].items():
        for what in ("map", "penalty_grad"):
            jt, zt = min(r["jaxsal"][what]), min(r["zennit"][what])
            first = r["jaxsal"][f"{what}_first_call"]
            r[f"{what}_speedup"] = zt / jt
            print(f"{arch:10} {what:14} {jt:9.3f} {zt:9.3f} {zt / jt:8.2f}x {first:11.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
