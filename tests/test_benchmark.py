"""The throughput benchmark's smoke test, and the conv backends against XLA's in float64."""

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


def test_tiny_preset_runs_and_reports(tmp_path):
    from benchmarks.bench_core import run_benchmark
    from benchmarks.throughput import PRESETS

    cfg = dict(PRESETS["tiny"], batches=[1], reps=1, warmup=0, fooling_methods=["gradcam"])
    cfg.update(preset="tiny", threads=1, torch=True, methods=["simple_grad", "lrp", "fooling"])
    out = run_benchmark(cfg, str(tmp_path / "bench"), progress=False)
    result = json.loads((out / "results.json").read_text())
    assert (out / "speedups.png").stat().st_size > 0
    assert "| resnet18 | 1 | simple_grad |" in (out / "results.md").read_text()
    libs = {(r["method"], r["library"]) for r in result["rows"]}
    assert {("floor", "jaxsal"), ("floor", "torch"), ("simple_grad", "captum"),
            ("lrp/epsilon_plus", "zennit"), ("fooling/gradcam", "jaxsal-xla-conv"),
            ("fooling/gradcam", "torch")} <= libs  # fmt: skip
    for row in result["rows"]:
        assert row["median_s"] > 0 and row["images_per_s"] > 0
    lines = {ln["method"]: ln for ln in result["ratios"]}
    assert lines["floor"]["floor_ratio"] == pytest.approx(1.0)
    assert lines["simple_grad"]["vs_captum"] > 0 and "met" in lines["simple_grad"]
    # a second run is written beside the first, never over it
    assert run_benchmark(cfg | {"methods": []}, str(tmp_path / "bench"), progress=False) != out
