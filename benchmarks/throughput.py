"""Interpreter throughput: jaxsal against Captum, Zennit, pytorch-grad-cam and a PyTorch step.

For each architecture, batch size and precision: images per second, compile
time (apart), FLOPs (XLA's cost analysis), achieved GFLOP/s and its fraction
of the matmul peak measured in the same run, and peak memory of every
interpreter, in jaxsal and in the PyTorch library that implements it, on the
same weights (random torchvision weights converted with
`weights_convert.from_torchvision`), the same thread count; float32, and
bfloat16 (jaxsal's `params.with_precision("bfloat16")` against PyTorch under
`torch.autocast`) with the accuracy of the bfloat16 maps; the ratio of each
jaxsal interpreter to its floor (one `jax.grad` of the logit); and one
fooling training step (forward, map, Location penalty, second-order
gradient, Adam; `jaxsal.train.make_step` on `jaxsal.fooling.loss`) for
Grad-CAM and LRP_T against plain PyTorch with `create_graph=True`. Writes
`results.json`, `results.md` and `speedups.png`.

Run from the repository root:

    python -m benchmarks.throughput --preset cpu --out runs/bench    # about an hour, idle CPU
    python -m benchmarks.throughput --preset tiny --out /tmp/bench   # a minute (the test)
    python -m benchmarks.throughput --preset full --out runs/bench   # the full grid (GPU)
    bash benchmarks/device_check.sh                                  # the GPU check (< 8 min)

`--threads N` pins the process to N cores before JAX starts (XLA:CPU sizes
its thread pools from the CPU affinity mask) and calls torch.set_num_threads(N).
"""

from __future__ import annotations

import argparse
import os
import sys

COMMON = dict(precisions=["float32", "bfloat16"], composites=["epsilon_plus"],
              fooling_methods=["gradcam", "lrp_t"], xla_conv=True, accuracy=True,
              perturbation_batches=[1], perturbation_reps=1)  # fmt: skip
PRESETS = {
    "tiny": COMMON | dict(archs=["resnet18"], size=64, batches=[1, 2], noise_batches=[1],
                          samples=4, chunk=None, reps=2, warmup=1, num_classes=10,
                          fooling_batches=[2], shap_samples=2, occlusion=(16, 16),
                          perturb_chunk=8, perturbation_archs=["resnet18"]),
    "cpu": COMMON | dict(archs=["vgg16", "resnet50", "densenet121"], size=224, batches=[1, 4],
                         noise_batches=[1], samples=50, chunk=10,
                         composites=["epsilon_plus", "epsilon_alpha2_beta1"], reps=3, warmup=1,
                         num_classes=1000, fooling_batches=[2], shap_samples=10,
                         occlusion=(32, 16), perturb_chunk=16, perturbation_archs=["resnet50"]),
    "full": COMMON | dict(archs=["vgg16", "resnet50", "densenet121"], size=224,
                          batches=[1, 8, 32, 64], noise_batches=[1, 8], samples=50, chunk=10,
                          composites=["epsilon_plus", "epsilon_alpha2_beta1",
                                      "epsilon_plus_flat", "epsilon_gamma_box"],
                          reps=5, warmup=2, num_classes=1000, fooling_batches=[8],
                          shap_samples=20, occlusion=(16, 8), perturb_chunk=64,
                          perturbation_archs=["vgg16", "resnet50", "densenet121"],
                          perturbation_reps=3),
    # benchmarks/device_check.sh: one GPU, under 8 minutes with compilation
    "device": COMMON | dict(archs=["resnet50", "vgg16"], size=224, batches=[1, 32],
                            noise_batches=[], samples=50, chunk=10, reps=3, warmup=1,
                            num_classes=1000, fooling_batches=[1, 32], shap_samples=10,
                            occlusion=(32, 16), perturb_chunk=64, perturbation_archs=[],
                            methods=["gradcam", "lrp", "fooling"], xla_conv=False),
}  # fmt: skip
METHODS = ["simple_grad", "input_x_grad", "smoothgrad", "integrated_gradients",
           "guided_backprop", "gradcam", "guided_gradcam", "gradcam_plusplus", "deeplift",
           "gradient_shap", "scorecam", "occlusion"]  # fmt: skip


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--threads", type=int, default=None, help="cores for both (default: all)")
    p.add_argument("--archs", nargs="+", help="override the preset's architectures")
    p.add_argument("--batches", nargs="+", type=int, help="override the preset's batch sizes")
    p.add_argument("--methods", nargs="+", help="subset of interpreters, 'lrp', 'fooling'")
    p.add_argument("--reps", type=int)
    p.add_argument("--warmup", type=int, help="untimed calls before the timed ones (>= 1)")
    p.add_argument("--size", type=int, help="image size in pixels")
    p.add_argument("--samples", type=int, help="SmoothGrad samples and IG steps (default 50)")
    p.add_argument("--precisions", nargs="+", choices=["float32", "bfloat16"])
    p.add_argument("--fooling-methods", nargs="+", choices=["gradcam", "lrp_t"])
    p.add_argument("--fooling-batches", nargs="+", type=int)
    p.add_argument(
        "--conv",
        choices=["auto", "xla", "patches", "matmul"],
        default=None,
        help="jaxsal's conv backend for the run (default: $JAXSAL_CONV or auto)",
    )
    p.add_argument("--no-torch", action="store_true", help="time jaxsal only")
    p.add_argument("--no-xla-conv", action="store_true",
                   help="skip the float32 fooling step on XLA's convolutions (CPU)")  # fmt: skip
    p.add_argument("--no-accuracy", action="store_true",
                   help="skip the fooling step's bfloat16 loss and gradient comparison")  # fmt: skip
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def config(args) -> dict:
    """The preset of `args` with the command line's overrides."""
    cfg = {"methods": METHODS + ["lrp", "fooling"], **PRESETS[args.preset]}
    keys = ("archs", "batches", "reps", "warmup", "size", "samples", "precisions",
            "fooling_methods", "fooling_batches", "methods")  # fmt: skip
    for k in keys:
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    cfg["xla_conv"] &= not args.no_xla_conv
    cfg["accuracy"] &= not args.no_accuracy
    return cfg


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
    # one GPU shared by both libraries: JAX would otherwise preallocate 75% of it
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    import torch

    torch.set_num_threads(threads)
    if torch.cuda.is_available():  # as XLA: TF32 float32 products, tuned conv algorithms
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True
    from benchmarks.bench_core import run_benchmark

    cfg = config(args)
    cfg.update(preset=args.preset, threads=threads, torch=not args.no_torch)
    out = run_benchmark(cfg, args.out, progress=args.progress)
    print(f"wrote {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
