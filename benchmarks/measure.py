"""Measurement for `benchmarks.throughput`: times, FLOPs, peak memory, the matmul peak.

A jaxsal computation is jitted; lowering+compilation is timed apart from the
runs, and its FLOPs are XLA's cost analysis of the compiled program
(`compiled.cost_analysis()["flops"]`). XLA counts the body of a loop once,
so a method that runs in chunks through `lax.map` is counted on the same
computation written without chunks (`flops_source` "one pass", from the
lowered program's cost analysis: nothing is compiled or run). Times are
medians over `reps` runs after `warmup` runs.

Peak memory on CPU is the process's resident-set high-water mark during one
call above its resident set before the call (`/proc/self/clear_refs` resets
the mark), the same measure for JAX and PyTorch. On GPU it is, for PyTorch,
the allocator's peak during the call above what it held before; for JAX,
whose allocator peak cannot be reset, XLA's temporary buffers plus outputs.

The roofline's peak: the best GFLOP/s of a few matrix products of
convolution shapes (ResNet50's 3x3 convolutions as im2col matmuls, at batch
1 and at the run's largest batch), timed with jax.numpy under jit in the
same process, in float32 and in bfloat16 with float32 accumulation.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time

import jax
import jax.numpy as jnp
import torch

from benchmarks.lrp_vs_zennit import best_of
from jaxsal.graph._conv import default_conv, resolve_conv

# (rows per image, K, N): ResNet50's 3x3 convolutions of layers 1 to 4 at 224 px as matmuls
PEAK_SHAPES = ((3136, 576, 64), (784, 1152, 128), (196, 2304, 256), (49, 4608, 512))
PEAK_REPS = 10


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def peak_of(fn, *, xla_mb: float | None = None) -> float:
    """Peak memory (MB) one call of fn adds; `xla_mb` is JAX's figure on GPU."""
    if on_gpu():
        if xla_mb is not None:
            fn()
            return xla_mb
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return float("nan")
    before = rss_kb()
    fn()
    return (rss_kb("VmHWM") - before) / 1024


def summary(times, images) -> dict:
    med = statistics.median(times)
    return {"median_s": med, "times_s": times, "images_per_s": images / med}


def _flops(analysis) -> float:
    if isinstance(analysis, list | tuple):  # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", float("nan")))


def flops_of(compiled, one_pass=None, args=()) -> tuple[float, str]:
    """FLOPs of one call: the compiled program's, or its loop-free variant's when it loops."""
    if one_pass is not None and re.search(r"\bwhile\(", compiled.as_text()):
        return _flops(jax.jit(one_pass).lower(*args).cost_analysis()), "one pass"
    return _flops(compiled.cost_analysis()), "compiled"


def time_jax(fn, args, *, images, warmup, reps, update=None, one_pass=None):
    """Compiles `fn` (a `jax.jit` function, or one to jit) on args, then times calls.

    With `update`, each call's output becomes the next call's args
    (`args = update(args, out)`): a training step threads its state.

    Returns:
      (row, out): the measurements and the last call's output.
    """
    t = time.perf_counter()
    lowered = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    flops, source = flops_of(compiled, one_pass, args)
    mem = compiled.memory_analysis()
    mb = lambda name: getattr(mem, name, float("nan")) / 2**20 if mem else float("nan")  # noqa: E731
    temp, out_mb = mb("temp_size_in_bytes"), mb("output_size_in_bytes")
    state, last = list(args), [None]

    def call():
        out = jax.block_until_ready(compiled(*state))
        if update is not None:
            state[:] = update(state, out)
        last[0] = out
        return out

    best_of(call, warmup - 1)
    peak = peak_of(call, xla_mb=temp + out_mb)  # the last warm-up call
    row = {**summary(best_of(call, reps), images), "compile_s": compile_s,
           "peak_mb": peak, "xla_temp_mb": temp, "flops": flops,
           "flops_source": source}  # fmt: skip
    return row, last[0]


def time_torch(fn, *, images, warmup, reps) -> dict:
    """Times a PyTorch callable; an error (e.g. an op without bfloat16) is recorded, not raised."""

    def call():
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    try:
        best_of(call, warmup - 1)
        peak = peak_of(call)
        return {**summary(best_of(call, reps), images), "peak_mb": peak}
    except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        return {"error": f"{type(e).__name__}: {str(e)[:300]}"}


def matmul_peak(dtype: str, *, batches=(1,), reps: int = PEAK_REPS) -> dict:
    """Best GFLOP/s of `PEAK_SHAPES` matmuls (float32 accumulation), rows times each batch."""
    key = jax.random.key(0)
    shapes = []
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    for batch in sorted(set(batches)):
        for rows, k, n in PEAK_SHAPES:
            m = rows * batch
            ka, kb = jax.random.split(jax.random.fold_in(key, m * k))
            a = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
            b = jax.random.normal(kb, (k, n), jnp.float32).astype(dtype)
            call = lambda a=a, b=b: jax.block_until_ready(f(a, b))  # noqa: E731
            best_of(call, 2)
            t = statistics.median(best_of(call, reps))
            shapes.append(
                {"m": m, "k": k, "n": n, "median_s": t, "gflops": 2 * m * k * n / t / 1e9}
            )
    return {"dtype": dtype, "gflops": max(s["gflops"] for s in shapes), "shapes": shapes}


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
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
