"""Interpreter throughput: jaxsal against Captum, Zennit, pytorch-grad-cam and a PyTorch step.

For each architecture and batch size: images per second, compile time (apart)
and peak memory of every interpreter, in jaxsal and in the PyTorch library
that implements it, on the same weights (random torchvision weights converted
with `weights_convert.from_torchvision`), float32, the same thread count; the
ratio of each jaxsal interpreter to its floor (one `jax.grad` of the logit);
and one fooling training step (forward, map, Location penalty, second-order
gradient, Adam) for Grad-CAM and LRP_T against plain PyTorch with
`create_graph=True`. Writes `results.json`, `results.md` and `speedups.png`.

Run from the repository root:

    python -m benchmarks.throughput --preset cpu --out runs/bench    # a few minutes
    python -m benchmarks.throughput --preset tiny --out /tmp/bench   # seconds (the test)
    python -m benchmarks.throughput --preset full --out runs/bench   # the full grid (GPU)

`--threads N` pins the process to N cores before JAX starts (XLA:CPU sizes
its thread pools from the CPU affinity mask) and calls torch.set_num_threads(N).
"""

from __future__ import annotations

import argparse
import os
import sys

PRESETS = {
    "tiny": dict(archs=["resnet18"], size=72, batches=[1, 2], noise_batches=[1], samples=4,
                 chunk=None, composites=["epsilon_plus"], reps=2, warmup=1, num_classes=10,
                 fooling_batch=2, fooling_methods=["gradcam", "lrp_t"]),
    "cpu": dict(archs=["vgg16", "resnet50", "densenet121"], size=224, batches=[1, 4],
                noise_batches=[1], samples=50, chunk=10,
                composites=["epsilon_plus", "epsilon_alpha2_beta1"], reps=3, warmup=1,
                num_classes=1000, fooling_batch=2, fooling_methods=["gradcam", "lrp_t"]),
    "full": dict(archs=["vgg16", "resnet50", "densenet121"], size=224, batches=[1, 8, 32, 64],
                 noise_batches=[1, 8], samples=50, chunk=10,
                 composites=["epsilon_plus", "epsilon_alpha2_beta1", "epsilon_plus_flat",
                             "epsilon_gamma_box"],
                 reps=5, warmup=2, num_classes=1000, fooling_batch=8,
                 fooling_methods=["gradcam", "lrp_t"]),
}  # fmt: skip
METHODS = ["simple_grad", "input_x_grad", "smoothgrad", "integrated_gradients",
           "guided_backprop", "gradcam", "guided_gradcam"]  # fmt: skip


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--threads", type=int, default=None, help="cores for both (default: all)")
    p.add_argument("--archs", nargs="+", help="override the preset's architectures")
    p.add_argument("--batches", nargs="+", type=int, help="override the preset's batch sizes")
    p.add_argument("--methods", nargs="+", help="subset of interpreters, 'lrp', 'fooling'")
    p.add_argument("--reps", type=int)
    p.add_argument("--samples", type=int, help="SmoothGrad samples and IG steps (default 50)")
    p.add_argument(
        "--conv",
        choices=["auto", "xla", "patches", "matmul"],
        default=None,
        help="jaxsal's conv backend for the run (default: $JAXSAL_CONV or auto)",
    )
    p.add_argument("--no-torch", action="store_true", help="time jaxsal only")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def set_threads(n: int | None) -> int:
    """Pins this process to n cores (before jax is imported); returns the count used."""
    cores = sorted(os.sched_getaffinity(0))
    if n is not None:
        if n > len(cores):
            raise ValueError(f"--threads {n} exceeds the {len(cores)} cores available")
        cores = cores[:n]
        os.sched_setaffinity(0, cores)
    return len(cores)


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)  # must precede `import jax`
    if args.conv is not None:  # read when jaxsal is imported
        os.environ["JAXSAL_CONV"] = args.conv
    import torch

    torch.set_num_threads(threads)
    from benchmarks.bench_core import run_benchmark

    cfg = dict(PRESETS[args.preset])
    for k in ("archs", "batches", "reps", "samples"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    cfg["methods"] = args.methods or METHODS + ["lrp", "fooling"]
    cfg.update(preset=args.preset, threads=threads, torch=not args.no_torch)
    out = run_benchmark(cfg, args.out, progress=args.progress)
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
