"""Properties of the interpreters that hold without a reference library.

- Second order: gradients with respect to the parameters of fooling-style
  penalties on Grad-CAM, SimpleGrad and Guided Backprop maps match central
  finite differences in float64.
- Integrated Gradients completeness; exactness on a linear model.
- `jax.jit`, `vmap` and `pmap` (8 fake CPU devices) change nothing.
- Bad inputs raise errors that name the problem and the fix.
- Closed forms on hand-made models (numpy re-implementations): Grad-CAM on a
  constructed conv output (as PAIR saliency tests it), gradient, Guided
  Backprop and DeconvNet through one conv + ReLU, SmoothGrad / VarGrad
  aggregation of the documented noise.

Random models come from `random_params`: the Flax tree's shapes filled with
numpy draws (He-scaled kernels, non-zero biases, random BatchNorm statistics
and affine parameters), which is fast and makes BatchNorm non-trivial.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsal
from jaxsal import postprocess as pp
from jaxsal.interpreters.cam import cam_from
from jaxsal.models.registry import build_module
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import ModelParams

F64 = jnp.float64


def random_params(arch_or_module, *, seed=0, beta=None, num_classes=10) -> ModelParams:
    """float64 random weights; BatchNorm scale/var in [0.5, 1.5), mean/bias ~ 0.1 N(0, 1)."""
    module = arch_or_module
    if isinstance(module, str):
        module = build_module(module, num_classes=num_classes)
    x = jax.ShapeDtypeStruct((1, 32, 32, module.in_channels), F64)
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0.0, np.sqrt(2.0 / np.prod(s.shape[:-1])), s.shape)
        if name in ("scale", "var"):
            return 0.5 + rng.random(s.shape)
        return 0.1 * rng.normal(size=s.shape)  # biases, running means

    v = jax.tree.map(jnp.asarray, jax.tree_util.tree_map_with_path(fill, shapes))
    return ModelParams(module=module, params=v.pop("params"), state=dict(v)).with_beta(beta)


def images(n, size, channels=1, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, size, size, channels), F64)


@pytest.fixture(scope="module")
def cnn():
    """A two-conv SmallCNN: quick to compile; "target" is the first conv's ReLU."""
    return random_params(SmallCNN(widths=(8, "M", 16)))


# ---------------------------------------------------------------- second order


def frame_mask(size):
    """The Location penalty's mask: 1 on a frame of width size // 7, 0 inside (SPEC 1)."""
    k = size // 7
    m = np.ones((size, size, 1))
    m[k:-k, k:-k] = 0.0
    return jnp.asarray(m)[None]


def location_penalty(method, x, c, **hyper):
    """mean((m - gradcam_heatmap)^2), the map upsampled (bilinear) to the input's size."""
    mask = frame_mask(x.shape[1])

    def f(p):
        h = pp.upsample(pp.gradcam_heatmap(method(p, x, c, **hyper)), x.shape[1:3])
        return jnp.mean((mask - h) ** 2)

    return f


def mask_penalty(method, x, c, heatmap=pp.simple_grad_heatmap):
    """sum(heatmap * w) with a fixed random weight map w (a constant w would make it constant)."""
    w = jax.random.uniform(jax.random.key(7), x.shape[:3] + (1,), F64)

    def f(p):
        return jnp.sum(heatmap(method(p, x, c)) * w)

    return f


def direction(params, seed):
    """A random direction: N(0, 1) per entry times its leaf's RMS (a relative perturbation)."""
    rng = np.random.default_rng(seed)

    def draw(a):
        return jnp.asarray(rng.normal(size=a.shape) * (np.sqrt(np.mean(np.square(a))) + 1e-3))

    return jax.tree.map(draw, params)


def fd_errors(f, params, *, h, directions=3):
    """Relative errors of <grad f, d> against (f(p + h d) - f(p - h d)) / 2h."""
    grad = jax.jit(jax.grad(f))(params)
    shifted = jax.jit(lambda p, d, t: f(jax.tree.map(lambda a, b: a + t * b, p, d)))
    errors = []
    for i in range(directions):
        d = direction(params, 100 + i)
        exact = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(d)))
        fd = (shifted(params, d, h) - shifted(params, d, -h)) / (2 * h)
        assert abs(float(exact)) > 1e-6, "degenerate direction: the penalty barely depends on it"
        errors.append(float(abs(fd - exact) / abs(exact)))
    return errors


# Beta-smoothed rectifiers (beta = 10) make the maps smooth in the parameters:
# plain-ReLU maps jump where a pre-activation changes sign, so FD then needs
# steps below the nearest kink (see the plain-ReLU test). The step h is
# relative (directions scale with each leaf's RMS). The central-difference
# error falls like h^2 and rounding (~1e-16 |f| / h) is far below: measured
# small CNN at h = 1e-4 / 1e-5 / 1e-6: 4e-3 / 5e-8 / 1e-9; ResNet18 (larger
# activations, sharper softplus curvature) at 1e-5 / 1e-6 / 1e-7: 1e-4 / 1e-6
# / 1e-8. Max-pooling stays piecewise; its switches are too rare at these h.
SECOND_ORDER_CASES = [("small_cnn", 48, 1e-6), ("resnet18", 72, 1e-7)]


@pytest.mark.parametrize("arch,size,h", SECOND_ORDER_CASES)
def test_second_order_gradcam_location(arch, size, h):
    c = 1
    params = random_params(arch, beta=10.0)
    x = images(1, size, params.in_channels)
    cam = jaxsal.gradcam(params, x, c, relu=False)
    # Not trivial: several positive cells, so the normalised map is not one-hot.
    assert int(jnp.sum(cam > 0)) >= 3
    errors = fd_errors(location_penalty(jaxsal.gradcam, x, c), params, h=h)
    assert max(errors) < 1e-6, errors


@pytest.mark.parametrize("arch,size,h", SECOND_ORDER_CASES)
def test_second_order_simple_grad(arch, size, h):
    c = 1
    params = random_params(arch, beta=10.0)
    x = images(1, size, params.in_channels)
    errors = fd_errors(mask_penalty(jaxsal.simple_grad, x, c), params, h=h)
    assert max(errors) < 1e-6, errors


def test_second_order_guided_backprop():
    """Through the custom_vjp rule: its backward pass must itself be differentiable."""
    params = random_params("small_cnn", beta=10.0)
    x = images(1, 48)
    errors = fd_errors(mask_penalty(jaxsal.guided_backprop, x, 2), params, h=1e-6)
    assert max(errors) < 1e-6, errors


def test_second_order_plain_relu_small_step():
    """Plain ReLU: piecewise smooth, so FD agrees only for h below the kinks' distance.

    Measured: h = 1e-3 crosses kinks (errors 4e-2 to 2), 1e-5 gives 2e-9, 1e-8
    is rounding-limited (8e-7); 1e-6 sits between.
    """
    params = random_params("small_cnn")
    x = images(1, 48)
    errors = fd_errors(location_penalty(jaxsal.gradcam, x, 1), params, h=1e-6)
    assert max(errors) < 1e-5, errors


# ----------------------------------------------------------- integrated gradients


def test_ig_completeness_smooth_model():
    """Sum of attributions = logit_c(x) - logit_c(baseline).

    A beta-smoothed conv net without max-pooling is analytic along the path, so
    Gauss-Legendre converges exponentially (measured on such nets: 1e-3 at 8
    steps, 2e-6 at 32, 1e-9 or less at 64). With max-pooling the integrand jumps
    where a pool switches and the error falls only like 1/steps (still up to
    8e-3 at 128 steps on the beta-smoothed SmallCNN), so none is used here.
    """
    params = random_params(SmallCNN(widths=(8, 16, 16)), beta=10.0)
    x, base = images(2, 24), 0.3 * images(2, 24, seed=1)
    c = jnp.array([1, 4])
    attr = jaxsal.integrated_gradients(params, x, c, baseline=base, steps=64)
    rows = jnp.arange(2)
    delta = jaxsal.logits(params, x)[rows, c] - jaxsal.logits(params, base)[rows, c]
    np.testing.assert_allclose(attr.sum(axis=(1, 2, 3)), delta, rtol=1e-6)


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right"]
)
def test_ig_exact_on_linear_model(method):
    """Logits W mean_hw(x) + b: the gradient is constant, so IG is exact at any steps."""
    params = random_params(SmallCNN(widths=()))
    x = images(2, 16)
    w = np.asarray(params.params["classifier"]["kernel"])  # (1, 10)
    c = np.array([3, 7])
    attr = jaxsal.integrated_gradients(params, x, jnp.asarray(c), steps=3, method=method)
    expected = np.asarray(x) * w[0, c].reshape(2, 1, 1, 1) / 16**2
    np.testing.assert_allclose(attr, expected, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------ transformations

TRANSFORM_CASES = {
    "simple_grad": (jaxsal.simple_grad, {}),
    "gradcam": (jaxsal.gradcam, {"layer": "target"}),
    "guided_backprop": (jaxsal.guided_backprop, {}),
    "integrated_gradients": (jaxsal.integrated_gradients, {"steps": 4}),
    "smoothgrad": (jaxsal.smoothgrad, {"samples": 3, "key": jax.random.key(5)}),
}


@pytest.mark.parametrize("name", list(TRANSFORM_CASES))
def test_jit_vmap_pmap_match_plain_call(cnn, name):
    method, hyper = TRANSFORM_CASES[name]
    assert jax.device_count() == 8
    xs = images(8, 24).reshape(8, 1, 24, 24, 1)
    cs = jnp.arange(8).reshape(8, 1) % 10
    plain = np.stack([method(cnn, xs[i], cs[i], **hyper) for i in range(8)])

    jitted = jax.jit(lambda p, x, c: method(p, x, c, **hyper))
    np.testing.assert_allclose(jitted(cnn, xs[0], cs[0]), plain[0], rtol=1e-10, atol=1e-14)

    # vmap over a leading axis of batches (4 batches of 2 images).
    vm = jax.vmap(lambda x, c: method(cnn, x, c, **hyper))
    xb, cb = xs.reshape(4, 2, 24, 24, 1), cs.reshape(4, 2)
    plain_b = np.stack([method(cnn, xb[i], cb[i], **hyper) for i in range(4)])
    np.testing.assert_allclose(vm(xb, cb), plain_b, rtol=1e-10, atol=1e-14)

    pm = jax.pmap(lambda p, x, c: method(p, x, c, **hyper), in_axes=(None, 0, 0))
    np.testing.assert_allclose(pm(cnn, xs, cs), plain, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------- bad inputs


def test_unknown_layer_lists_names(cnn):
    with pytest.raises(jaxsal.LayerNotFoundError) as err:
        jaxsal.gradcam(cnn, images(1, 24), 0, layer="features.99")
    msg = str(err.value)
    assert '"features.99" not found' in msg
    assert "features" in msg and "classifier" in msg and "target" in msg
    assert "layer_names" in msg


@pytest.mark.parametrize("c", [10, -1, np.array([0, 12])])
def test_class_out_of_range(cnn, c):
    with pytest.raises(
        ValueError, match=r"out of range for a model with 10 classes \(valid: 0 to 9"
    ):
        jaxsal.simple_grad(cnn, images(2, 24), c)


@pytest.mark.parametrize("c", [np.array([0, 1, 2]), np.zeros((2, 1), int)])
def test_class_wrong_shape(cnn, c):
    with pytest.raises(ValueError, match=r"one entry per image, shape \(2,\)"):
        jaxsal.simple_grad(cnn, images(2, 24), c)


def test_class_not_integer(cnn):
    with pytest.raises(TypeError, match="int"):
        jaxsal.simple_grad(cnn, images(1, 24), 1.0)


def test_input_rank(cnn):
    with pytest.raises(ValueError, match=r"\(N, H, W, 1\).*x\[None\]"):
        jaxsal.simple_grad(cnn, images(1, 24)[0], 0)


def test_input_nchw_suggests_transpose():
    params = random_params("resnet18")
    x = jnp.zeros((1, 3, 72, 72), F64)
    with pytest.raises(ValueError, match=r"NCHW.*x\.transpose\(0, 2, 3, 1\)"):
        jaxsal.simple_grad(params, x, 0)


def test_input_non_finite(cnn):
    x = images(1, 24).at[0, 3, 4, 0].set(jnp.nan).at[0, 5, 5, 0].set(jnp.inf)
    with pytest.raises(ValueError, match="2 non-finite values"):
        jaxsal.gradcam(cnn, x, 0)


def test_input_integer(cnn):
    x = jnp.zeros((1, 24, 24, 1), jnp.int32)
    with pytest.raises(TypeError, match=r"floating-point.*astype"):
        jaxsal.simple_grad(cnn, x, 0)


def test_input_dtype_differs_from_params(cnn):
    x = images(1, 24).astype(jnp.float32)
    with pytest.raises(TypeError, match=r"x is float32 but .* float64.*x\.astype\(jnp\.float64\)"):
        jaxsal.simple_grad(cnn, x, 0)


def test_params_type(cnn):
    with pytest.raises(TypeError, match="ModelParams"):
        jaxsal.simple_grad(cnn.variables, images(1, 24), 0)


@pytest.mark.parametrize("method", [jaxsal.smoothgrad, jaxsal.vargrad])
def test_noise_tunnel_needs_key(cnn, method):
    with pytest.raises(ValueError, match=r"PRNG key.*key=jax\.random\.key\(0\)"):
        method(cnn, images(1, 24), 0, samples=2)


@pytest.mark.parametrize("layer", ["classifier", "flatten"])
def test_gradcam_needs_spatial_layer(cnn, layer):
    with pytest.raises(ValueError, match=r"spatial layer \(N, h, w, C\)"):
        jaxsal.gradcam(cnn, images(1, 24), 0, layer=layer)


def test_unknown_ig_method(cnn):
    with pytest.raises(ValueError, match=r'unknown method "simpson".*gausslegendre.*riemann_left'):
        jaxsal.integrated_gradients(cnn, images(1, 24), 0, method="simpson")


# ------------------------------------------------------- hand-made analytic models


def test_cam_from_handmade_conv_output():
    """Grad-CAM on constructed activations and gradients (PAIR saliency's test)."""
    rng = np.random.default_rng(0)
    acts, grads = rng.normal(size=(2, 5, 4, 6)), rng.normal(size=(2, 5, 4, 6))
    alpha = grads.mean(axis=(1, 2))  # (2, 6)
    signed = np.einsum("nhwk,nk->nhw", acts, alpha)[..., None]
    np.testing.assert_allclose(cam_from(acts, grads, relu=False), signed, rtol=1e-12)
    np.testing.assert_allclose(cam_from(acts, grads), np.maximum(signed, 0), rtol=1e-12)
    # A map that lights up where the constructed evidence is: one hot channel.
    acts = np.zeros((1, 5, 5, 3))
    acts[0, 1:3, 2:4, 1] = 2.0
    grads = np.zeros((1, 5, 5, 3))
    grads[..., 1] = 0.5
    expected = np.zeros((1, 5, 5, 1))
    expected[0, 1:3, 2:4, 0] = 1.0
    np.testing.assert_allclose(cam_from(acts, grads), expected)


def test_gradcam_and_simple_grad_t_before_global_pooling(cnn):
    """After the features come global average pooling and W: dlogit_c/dA_k = W[k, c] / hw."""
    x, c = images(2, 24), np.array([2, 5])
    acts = np.asarray(jaxsal.features(cnn, x, ["features"])["features"])
    n, h, w, _ = acts.shape
    weight = np.asarray(cnn.params["classifier"]["kernel"])[:, c].T / (h * w)  # (N, K)
    expected = np.maximum(np.einsum("nhwk,nk->nhw", acts, weight), 0)[..., None]
    cam = jaxsal.gradcam(cnn, x, jnp.asarray(c), layer="features")
    np.testing.assert_allclose(cam, expected, rtol=1e-10, atol=1e-14)
    grad_t = jaxsal.simple_grad_t(cnn, x, jnp.asarray(c), layer="features")
    np.testing.assert_allclose(grad_t, np.broadcast_to(weight[:, None, None], acts.shape))


def _conv_np(x, k, b):
    """3x3 conv with zero padding 1, NHWC / HWIO."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    _, h, w, _ = x.shape
    z = sum(xp[:, i : i + h, j : j + w] @ k[i, j] for i in range(3) for j in range(3))
    return z + b


def _conv_transpose_np(g, k):
    """The input gradient of `_conv_np` for an output cotangent g."""
    n, h, w, _ = g.shape
    out = np.zeros((n, h + 2, w + 2, k.shape[2]))
    for i in range(3):
        for j in range(3):
            out[:, i : i + h, j : j + w] += g @ k[i, j].T
    return out[:, 1:-1, 1:-1]


def test_one_conv_relu_model_closed_forms():
    """conv3x3 -> ReLU -> global mean -> W: gradient, x * grad, Guided Backprop, DeconvNet.

    With v = W[:, c] / hw the gradient at the ReLU output, the input maps are the
    conv transpose of v * 1[z > 0] (gradient), relu(v) * 1[z > 0] (guided) and
    relu(v) (deconvnet: the forward mask is ignored).
    """
    params = random_params(SmallCNN(widths=(6,)), seed=3)
    x, c = images(2, 12, seed=4), np.array([0, 9])
    k = np.asarray(params.params["features"]["0"]["kernel"])
    b = np.asarray(params.params["features"]["0"]["bias"])
    z = _conv_np(np.asarray(x), k, b)
    active = (z > 0).astype(float)
    v = np.asarray(params.params["classifier"]["kernel"])[:, c].T[:, None, None] / 144
    cases = {
        jaxsal.simple_grad: _conv_transpose_np(v * active, k),
        jaxsal.input_x_grad: np.asarray(x) * _conv_transpose_np(v * active, k),
        jaxsal.guided_backprop: _conv_transpose_np(np.maximum(v, 0) * active, k),
        jaxsal.deconvnet: _conv_transpose_np(np.broadcast_to(np.maximum(v, 0), z.shape), k),
    }
    for method, expected in cases.items():
        got = method(params, x, jnp.asarray(c))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13, err_msg=method.__name__)


def test_simple_grad_matches_finite_differences_of_logits():
    params = random_params("small_cnn", beta=10.0)
    x, c, h = images(1, 32), 3, 1e-5
    grad = jaxsal.simple_grad(params, x, c)
    for seed in range(2):
        d = images(1, 32, seed=10 + seed)
        plus = jaxsal.logits(params, x + h * d)[0, c]
        minus = jaxsal.logits(params, x - h * d)[0, c]
        np.testing.assert_allclose(jnp.vdot(grad, d), (plus - minus) / (2 * h), rtol=1e-7)


def test_smoothgrad_tiny_noise_is_simple_grad(cnn):
    x = images(2, 24)
    smooth = jaxsal.smoothgrad(cnn, x, 4, key=jax.random.key(0), samples=4, stdev=1e-10)
    np.testing.assert_allclose(smooth, jaxsal.simple_grad(cnn, x, 4), rtol=1e-6, atol=1e-12)


def test_smoothgrad_vargrad_aggregate_documented_noise(cnn):
    """noise = stdev * normal(key, (samples,) + x.shape), stdev = 0.15 (max - min) per image."""
    x, c, s, key = images(2, 24), jnp.array([1, 2]), 5, jax.random.key(3)
    xn = np.asarray(x)
    stdev = 0.15 * (xn.max(axis=(1, 2, 3)) - xn.min(axis=(1, 2, 3)))
    noise = np.asarray(jax.random.normal(key, (s,) + x.shape, F64))
    noisy = xn[None] + stdev.reshape(1, 2, 1, 1, 1) * noise
    grads = np.stack([jaxsal.simple_grad(cnn, noisy[i], c) for i in range(s)])
    smooth = jaxsal.smoothgrad(cnn, x, c, key=key, samples=s)
    var = jaxsal.vargrad(cnn, x, c, key=key, samples=s)
    np.testing.assert_allclose(smooth, grads.mean(0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(var, grads.var(0), rtol=1e-9, atol=1e-16)


def test_vargrad_non_negative_float32(cnn):
    """E[a^2] - E[a]^2 cancels to small negatives in float32; the variance must not."""
    params = cnn.astype(jnp.float32)
    x = images(1, 16).astype(jnp.float32)  # the one-pass formula gave 75 negatives here
    var = jaxsal.vargrad(params, x, 0, key=jax.random.key(0), samples=8, stdev=1e-3)
    assert var.dtype == jnp.float32
    assert float(var.min()) >= 0.0


def test_noise_tunnels_on_linear_model():
    """Constant gradient: SmoothGrad equals it at any noise, VarGrad is zero."""
    params = random_params(SmallCNN(widths=()))
    x, key = images(1, 16), jax.random.key(1)
    grad = np.asarray(params.params["classifier"]["kernel"])[0, 6] / 16**2
    smooth = jaxsal.smoothgrad(params, x, 6, key=key, samples=4, noise_level=0.5)
    np.testing.assert_allclose(smooth, np.full(x.shape, grad), rtol=1e-12)
    var = jaxsal.vargrad(params, x, 6, key=key, samples=4, noise_level=0.5)
    np.testing.assert_allclose(var, 0.0, atol=1e-30)
