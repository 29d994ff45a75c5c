"""The throughput benchmark's smoke test, and the conv backends against XLA's in float64."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

import jaxsal
from jaxsal.graph import _conv as layers
from jaxsal.graph._conv import matmul_conv, patch_conv, resolve_conv

# (kernel, stride, padding, input size): torchvision's conv shapes, odd and even sizes.
CONVS = [(3, 1, 1, 7), (3, 2, 1, 8), (1, 2, 0, 7), (7, 2, 3, 11), (1, 1, 0, 5), (2, 2, 0, 6)]


def xla_conv(x, w, stride, pad):
    return lax.conv_general_dilated(
        x, w, (stride, stride), ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip


IMPLS = {
    "patches": lambda x, w, s, p: patch_conv(x, w, (s, s), ((p, p), (p, p)), (1, 1)),
    "im2col": lambda x, w, s, p: matmul_conv(x, w, (s, s), ((p, p), (p, p))),
    # the same entry point above its im2col limit: patch_conv inside matmul_conv
    "matmul-fallback": lambda x, w, s, p: matmul_conv(x, w, (s, s), ((p, p), (p, p)), 0),
}


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("k,stride,pad,size", CONVS)
def test_conv_derivatives_match_xla(impl, k, stride, pad, size, monkeypatch):
    monkeypatch.setattr(layers, "IM2COL_MIN_CHANNELS", 4)  # im2col on these 4-channel inputs
    rng = np.random.default_rng(k * 10 + size)
    x = jnp.asarray(rng.standard_normal((2, size, size, 4)))
    w = jnp.asarray(rng.standard_normal((k, k, 4, 3)))
    ours = jax.jit(lambda x, w: IMPLS[impl](x, w, stride, pad))
    ref = lambda x, w: xla_conv(x, w, stride, pad)  # noqa: E731
    np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-13, atol=1e-13)
    g = jnp.asarray(rng.standard_normal(ref(x, w).shape))
    for a, b in zip(jax.vjp(ours, x, w)[1](g), jax.vjp(ref, x, w)[1](g)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    def second(conv):  # d/d(x, w) of a function of d/dw: the fooling step's shape
        inner = jax.grad(lambda x, w: jnp.sum(jnp.cos(conv(x, w))), argnums=1)
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(inner(x, w))), argnums=(0, 1))(x, w)

    for a, b in zip(second(ours), second(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)
    check_grads(ours, (x, w), order=2, modes=("rev",))


@pytest.mark.parametrize("cin,size,conv", [(3, 9, False), (16, 9, True), (64, 9, False),
                                            (64, 300, True)])  # fmt: skip
def test_matmul_conv_routes_thin_and_huge_convolutions_to_xla(cin, size, conv):
    x, w = jnp.zeros((1, size, size, cin)), jnp.zeros((3, 3, cin, 8))
    text = str(jax.make_jaxpr(lambda x, w: matmul_conv(x, w, (1, 1), ((1, 1), (1, 1))))(x, w))
    assert ("conv_general_dilated" in text) == conv  # 300x300x9x64 > IM2COL_LIMIT


def test_conv_backend_leaves_model_gradients_unchanged():
    params = jaxsal.init("small_cnn", jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1), jnp.float64)
    c = jnp.array([1, 2])

    def penalty(p):  # second order: the parameter gradient of a Grad-CAM-style map
        g = jaxsal.simple_grad_t(p, x, c, layer="target")
        return jnp.sum(jnp.tanh(g) ** 2)

    assert params.spec.conv == "auto" and resolve_conv("auto") == "matmul"  # on the CPU
    xla = params.with_conv("xla")
    ref = jax.grad(penalty)(xla), jaxsal.logits(xla, x)
    for backend in ("patches", "matmul"):
        p = params.with_conv(backend)
        ours = jax.grad(penalty)(p), jaxsal.logits(p, x)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown conv backend"):
        params.with_conv("cudnn")


def test_conv_backend_is_static_and_keeps_compiled_functions():
    """Switching the backend retraces for the new model only: no global state, no cache clearing."""
    params = jaxsal.init("small_cnn", jax.random.key(0), dtype=jnp.float64)
    x = jnp.ones((1, 32, 32, 1))
    traces = []

    @jax.jit
    def f(p, x):
        traces.append(p.spec.conv)
        return p.apply(x)

    f(params.with_conv("xla"), x)
    f(params.with_conv("matmul"), x)
    f(params.with_conv("xla"), x)  # cached: no third trace
    assert traces == ["xla", "matmul"]


def test_bad_conv_backend_in_environment_is_refused():
    env = dict(os.environ, JAXSAL_CONV="cudnn")
    code = "import jax, jaxsal; jaxsal.init('small_cnn', jax.random.key(0))"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip
    assert run.returncode != 0
    assert 'JAXSAL_CONV="cudnn" is not a conv backend' in run.stderr


NEW_ROWS = {"gradcam_plusplus": "pytorch-grad-cam", "scorecam": "pytorch-grad-cam",
            "deeplift": "captum", "gradient_shap": "captum", "occlusion": "captum"}  # fmt: skip


def test_tiny_preset_runs_and_reports(tmp_path):
    """Every peer of issue 19's new rows, the roofline columns, the fooling step on the engine."""
    from benchmarks.bench_core import run_benchmark
    from benchmarks.throughput import PRESETS

    cfg = dict(PRESETS["tiny"], batches=[1], reps=1, warmup=0, fooling_methods=["gradcam"],
               precisions=["float32"], perturb_chunk=64)  # fmt: skip
    cfg.update(preset="tiny", threads=1, torch=True,
               methods=["simple_grad", *NEW_ROWS, "lrp", "fooling"])  # fmt: skip
    out = run_benchmark(cfg, str(tmp_path / "bench"), progress=False)
    result = json.loads((out / "results.json").read_text())
    assert (out / "speedups.png").stat().st_size > 0
    md = (out / "results.md").read_text()
    assert "| resnet18 | 1 | simple_grad | float32 |" in md and "Matmul peak" in md
    libs = {(r["method"], r["library"]) for r in result["rows"] if "error" not in r}
    assert {("floor", "jaxsal"), ("floor", "torch"), ("simple_grad", "captum"),
            ("lrp/epsilon_plus", "zennit"), ("fooling/gradcam", "jaxsal-xla-conv"),
            ("fooling/gradcam", "torch")} <= libs  # fmt: skip
    assert {(m, peer) for m, peer in NEW_ROWS.items()} <= libs
    for row in result["rows"]:
        assert row["median_s"] > 0 and row["images_per_s"] > 0
        if row["library"] == "jaxsal":
            assert row["flops"] > 0, row
    peak = result["peaks"]["float32"]
    assert peak["gflops"] == max(s["gflops"] for s in peak["shapes"]) > 0
    lines = {ln["method"]: ln for ln in result["ratios"]}
    assert lines["floor"]["floor_ratio"] == pytest.approx(1.0)
    assert lines["floor"]["peak_frac"] == pytest.approx(lines["floor"]["gflops"] / peak["gflops"])
    assert {t["name"] for t in lines["floor"]["targets"]} == {"peak"}
    assert lines["simple_grad"]["vs_captum"] > 0
    assert {t["name"] for t in lines["simple_grad"]["targets"]} == {"peer", "floor"}
    # the PyTorch side is credited with jaxsal's FLOP count
    sg = lines["simple_grad"]
    assert sg["peer_gflops"]["captum"] == pytest.approx(sg["gflops"] / sg["vs_captum"])
    # Score-CAM runs in chunks (lax.map): counted on its one-pass program
    rows = {(r["method"], r["library"]): r for r in result["rows"]}
    # (layer2.1's 128 channels in two chunks: 128 masked forward passes, about 64 floors)
    floor = rows[("floor", "jaxsal")]["flops"]
    assert rows[("scorecam", "jaxsal")]["flops_source"] == "one pass"
    assert rows[("scorecam", "jaxsal")]["flops"] > 40 * floor
    assert rows[("occlusion", "jaxsal")]["flops"] > 5 * floor  # 16 windows in one chunk
    # a second run is written beside the first, never over it
    assert run_benchmark(cfg | {"methods": []}, str(tmp_path / "bench"), progress=False) != out


def test_chunked_methods_are_counted_in_one_pass():
    """XLA counts a loop's body once: the FLOPs of a chunked method come from its one-pass twin."""
    from benchmarks.measure import flops_of

    a = jnp.ones((64, 64), jnp.float32)
    looped = lambda a: jax.lax.map(lambda i: a @ a + i, jnp.arange(8.0, dtype=jnp.float32))
    once = lambda a: jnp.stack([a @ a + i for i in range(8)])
    compiled = jax.jit(looped).lower(a).compile()
    flops, source = flops_of(compiled, once, (a,))
    assert source == "one pass" and flops == pytest.approx(8 * 2 * 64**3, rel=0.02)
    assert flops_of(jax.jit(once).lower(a).compile())[1] == "compiled"


def test_device_check_runs_on_cpu_with_tiny_overrides(tmp_path):
    """`benchmarks/device_check.sh --tiny`: the GPU check's grid, resnet18 at 64 px, 1 rep."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    out = tmp_path / "check"
    run = subprocess.run(["bash", "benchmarks/device_check.sh", "--tiny", "--out", str(out)],
                         cwd=root, env=env | {"PYTHON": sys.executable}, capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["precisions"] == ["float32", "bfloat16"]
    assert set(result["peaks"]) == {"float32", "bfloat16"}
    libs = {(r["method"], r["precision"], r["library"]) for r in result["rows"] if "error" not in r}
    for prec in ("float32", "bfloat16"):
        assert {("floor", prec, "torch"), ("gradcam", prec, "captum"),
                ("gradcam", prec, "pytorch-grad-cam"), ("lrp/epsilon_plus", prec, "zennit"),
                ("fooling/gradcam", prec, "torch"), ("fooling/lrp_t", prec, "torch"),
                ("fooling/lrp_t", prec, "jaxsal")} <= libs  # fmt: skip
    bf16 = [ln for ln in result["ratios"] if ln["precision"] == "bfloat16"]
    assert bf16 and all(ln["bf16_over_f32"] > 0 for ln in bf16)
    acc = {a["method"]: a for a in result["accuracy"]}
    assert {"floor", "gradcam", "lrp/epsilon_plus", "fooling/gradcam", "fooling/lrp_t"} <= set(acc)
    assert "bfloat16 against float32" in (out / "results.md").read_text()


# ------------------------------------------------------------ bfloat16 accuracy


@pytest.fixture(scope="module")
def bf16_case():
    params = jaxsal.init("resnet18", jax.random.key(0), num_classes=10, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3), jnp.float32)
    return params, x, jnp.array([3, 7])


BF16_LAYER = "layer2.1"  # 8x8 at 64 px (the benchmark's tiny Grad-CAM layer)


def test_bfloat16_maps_rank_like_float32(bf16_case):
    """SimpleGrad, Grad-CAM and LRP epsilon-plus with `with_precision("bfloat16")`.

    sum_c |map| against float32, resnet18 at 64 px with random weights
    (`jaxsal.init`), 2 images. Measured (max relative error / min Spearman
    over the images): SimpleGrad 0.17 / 0.972, Grad-CAM at layer2.1 0.13 /
    0.961, LRP epsilon-plus 0.078 / 0.9988. Bounds: Spearman > 0.9 (issue
    18), max relative error < 0.5.
    """
    from benchmarks.precision import map_accuracy

    params, x, c = bf16_case

    @jax.jit
    def maps(p):
        return {"simple_grad": jaxsal.simple_grad(p, x, c),
                "gradcam": jaxsal.gradcam(p, x, c, layer=BF16_LAYER),
                "lrp": jaxsal.lrp.attribute(p, x, c, composite="epsilon_plus")}  # fmt: skip

    ref, low = maps(params), maps(params.with_precision("bfloat16"))
    for name in ref:
        assert low[name].dtype == jnp.float32  # maps stay float32
        acc = map_accuracy(ref[name], low[name])
        print(name, acc)
        assert acc["spearman"] > 0.9, (name, acc)
        assert acc["max_rel_err"] < 0.5, (name, acc)


@pytest.mark.parametrize("method", ["gradcam", "lrp_t"])
def test_bfloat16_fooling_loss_and_gradient(bf16_case, method):
    """The fooling step's loss (Location, lam 1) and parameter gradient in bfloat16.

    Measured on resnet18 at 64 px (random weights), 2 images: loss relative
    error 4.5e-4 (Grad-CAM) and 2.1e-5 (LRP_T, epsilon-plus); gradient
    relative L2 error 0.080 and 0.070 (max |diff| / max |g|: 0.067, 0.021).
    Bounds: loss within 2% (issue 18), gradient L2 error < 0.25.
    """
    from benchmarks.precision import fooling_accuracy

    params, x, c = bf16_case
    fooling = jaxsal.fooling.Fooling(kind="location", method=method, layer=BF16_LAYER,
                                     composite="epsilon_plus")  # fmt: skip
    loss_fn = functools.partial(jaxsal.fooling.loss, fooling=fooling)
    acc = fooling_accuracy(loss_fn, params, {"image": x, "label": c})
    print(method, acc)
    assert acc["loss_rel_err"] < 0.02, acc
    assert acc["grad_rel_err"] < 0.25, acc
