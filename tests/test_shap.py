"""GradientShap, KernelSHAP, LIME, Shapley Value Sampling: Captum 0.9 parity, axioms, draws.

Reference: torchvision VGG16 and ResNet50 with random weights, randomised
BatchNorm statistics and non-zero biases, converted by
`weights_convert.from_torchvision`; relative error `max|ours - ref| / max|ref|`
below 1e-8. Captum draws its own random numbers; it is given jaxsal's instead,
from the public draw functions:

- GradientShap: `np.random.choice` (baselines), `torch.normal` (noise) and
  `np.random.uniform` (points on the segment) return `gradient_shap_draws`,
  laid out image-major as Captum's `repeat_interleave` lays out its samples.
- KernelShap and Lime: `perturb_func` yields `kernel_shap_samples` /
  `lime_samples`, image by image; both libraries weight them by their own
  kernels (KernelSHAP's 1e6 / 1, LIME's exponential cosine kernel).
  Lime fits `SkLearnRidge(alpha=1)` (jaxsal's surrogate), not its default Lasso.
- ShapleyValueSampling: `permutation_generator` yields `shapley_permutations`.

Captum casts samples, outputs, weights and coefficients to float32 on the way
(`.float()`, `torch.FloatTensor`, `dtype=torch.float`); `captum_float64` keeps
float64 there. The draws themselves are checked against their distributions,
and on a linear model every method against its closed form.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import GradientShap, KernelShap, Lime, ShapleyValueSampling
from parity import captum_float64, converted, relative_error, superpixels
from torch_ref import to_nchw

import jaxsal
from jaxsal.forward import select_class
from jaxsal.interpreters.shap import (
    gradient_shap,
    gradient_shap_draws,
    kernel_shap,
    kernel_shap_samples,
    lime,
    lime_samples,
    shapley_permutations,
    shapley_value_sampling,
)

# Captum recommends one image at a time; jaxsal fits one surrogate per image as Captum does.
pytestmark = pytest.mark.filterwarnings("ignore:You are providing multiple inputs:UserWarning")

TOL = 1e-8
SIZE = 32
CLASSES = np.array([3, 7])
KEY = jax.random.key(7)


def feeder(samples: np.ndarray):
    """A Captum `perturb_func` generator yielding `samples[i]` (S, M) for the i-th image."""
    images = iter(np.asarray(samples))

    def perturb_func(original_input, **kwargs):
        for z in next(images):
            yield torch.from_numpy(z[None].astype(np.int64))

    return perturb_func


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    model: torch.nn.Module
    params: jaxsal.ModelParams
    x: np.ndarray

    def logit(self, x) -> np.ndarray:
        with torch.no_grad():
            return self.model(to_nchw(x)).numpy()[np.arange(len(CLASSES)), CLASSES]


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def case(request) -> Case:
    return Case(request.param, *converted(request.param, SIZE))


def per_feature_values(attr, mask) -> np.ndarray:
    """(N, M) values of a per-feature map, read at one pixel of each feature."""
    rows, cols = zip(*(np.argwhere(mask == k)[0] for k in range(mask.max() + 1)))
    return np.asarray(attr)[:, rows, cols, 0]


# ------------------------------------------------------------------ Captum parity


def test_gradient_shap_parity(case, monkeypatch):
    samples, stdevs = 3, 0.2
    baselines = 0.5 * np.random.default_rng(1).normal(size=(4, SIZE, SIZE, 3))
    index, alpha, noise = (np.asarray(a) for a in gradient_shap_draws(
        KEY, case.x.shape, len(baselines), samples, jnp.float64))  # fmt: skip
    # Captum's row i * samples + s holds image i's sample s.
    captum_index = index.T.reshape(-1)
    captum_alpha = alpha.T.reshape(-1)
    captum_noise = stdevs * noise.transpose(1, 0, 4, 2, 3).reshape((-1, 3, SIZE, SIZE))
    draws = []

    def choice(n, size):
        assert (n, size) == (len(baselines), captum_index.size)
        draws.append("choice")
        return captum_index.copy()

    def uniform(low, high, size):
        assert (low, high, size) == (0.0, 1.0, captum_alpha.size)
        draws.append("uniform")
        return captum_alpha.copy()

    def normal(mean, std):
        assert mean == 0 and tuple(std.shape) == captum_noise.shape
        draws.append("normal")
        return torch.from_numpy(np.ascontiguousarray(captum_noise))

    monkeypatch.setattr(np.random, "choice", choice)
    monkeypatch.setattr(np.random, "uniform", uniform)
    monkeypatch.setattr(torch, "normal", normal)
    ref = GradientShap(case.model).attribute(
        to_nchw(case.x).requires_grad_(), baselines=to_nchw(baselines), n_samples=samples,
        stdevs=stdevs, target=torch.from_numpy(CLASSES),
    )  # fmt: skip
    assert sorted(draws) == ["choice", "normal", "uniform"]
    run = jax.jit(lambda p, x, c, b: gradient_shap(p, x, c, key=KEY, baselines=b,
                                                    n_samples=samples, stdevs=stdevs))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES), baselines)
    assert relative_error(ours, ref) < TOL


def test_kernel_shap_parity(case):
    mask, samples = superpixels(SIZE), 14
    z = np.asarray(kernel_shap_samples(KEY, len(case.x), samples, 9))
    explainer = KernelShap(case.model)
    explainer.perturb_func = feeder(z)
    with captum_float64():
        ref = explainer.attribute(
            to_nchw(case.x), baselines=0.25, target=torch.from_numpy(CLASSES),
            feature_mask=torch.from_numpy(mask)[None, None], n_samples=samples,
            perturbations_per_eval=4,
        )  # fmt: skip
    run = jax.jit(lambda p, x, c: kernel_shap(p, x, c, key=KEY, feature_mask=mask, baseline=0.25,
                                              n_samples=samples, chunk=4))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES))
    assert relative_error(ours, ref) < TOL
    # The all-on and all-off coalitions' 1e6 weight: values nearly sum to f(x) - f(baseline).
    delta = case.logit(case.x) - case.logit(np.full_like(case.x, 0.25))
    np.testing.assert_allclose(per_feature_values(ours, mask).sum(1), delta, rtol=1e-4)


def test_lime_parity(case):
    mask, samples = superpixels(SIZE), 12
    z = np.asarray(lime_samples(KEY, len(case.x), samples, 9))
    explainer = Lime(
        case.model, interpretable_model=SkLearnRidge(alpha=1.0), perturb_func=feeder(z)
    )
    with captum_float64():
        ref = explainer.attribute(
            to_nchw(case.x), target=torch.from_numpy(CLASSES),
            feature_mask=torch.from_numpy(mask)[None, None], n_samples=samples,
            perturbations_per_eval=5,
        )  # fmt: skip
    run = jax.jit(lambda p, x, c: lime(p, x, c, key=KEY, feature_mask=mask, n_samples=samples,
                                       chunk=5))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES))
    assert relative_error(ours, ref) < TOL


def test_shapley_value_sampling_parity(case):
    mask, samples = superpixels(SIZE), 2
    perms = np.asarray(shapley_permutations(KEY, samples, 9))
    explainer = ShapleyValueSampling(case.model)
    explainer.permutation_generator = lambda m, n: iter(perms.tolist())
    with captum_float64():
        ref = explainer.attribute(
            to_nchw(case.x), baselines=-0.5, target=torch.from_numpy(CLASSES),
            feature_mask=torch.from_numpy(mask)[None, None], n_samples=samples,
            perturbations_per_eval=6,
        )  # fmt: skip
    run = jax.jit(lambda p, x, c: shapley_value_sampling(
        p, x, c, key=KEY, feature_mask=mask, baseline=-0.5, n_samples=samples, chunk=6))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES))
    assert relative_error(ours, ref) < TOL
    # Efficiency: every order telescopes to f(x) - f(baseline).
    delta = case.logit(case.x) - case.logit(np.full_like(case.x, -0.5))
    np.testing.assert_allclose(per_feature_values(ours, mask).sum(1), delta, rtol=1e-10)


# ------------------------------------------------------------------ the draws


def test_kernel_shap_samples_follow_the_shapley_kernel():
    m, s = 6, 20002
    z = np.asarray(kernel_shap_samples(jax.random.key(0), 1, s, m))[0]
    assert z[0].all() and not z[1].any()
    size = z[2:].sum(1)
    k = np.arange(1, m)
    p = (m - 1) / (k * (m - k))
    p = p / p.sum()
    freq = np.array([(size == kk).mean() for kk in k])
    se = np.sqrt(p * (1 - p) / (s - 2))
    assert np.all(np.abs(freq - p) < 5 * se), (freq, p)
    # Given its size, a coalition is a uniform subset: every feature equally often.
    inclusion = z[2:].mean(0)
    assert np.abs(inclusion - inclusion.mean()).max() < 0.02


def test_lime_samples_and_permutations_are_uniform():
    z = np.asarray(lime_samples(jax.random.key(0), 2, 5000, 4))
    assert z.shape == (2, 5000, 4) and np.abs(z.mean() - 0.5) < 5 * np.sqrt(0.25 / z.size)
    perms = np.asarray(shapley_permutations(jax.random.key(0), 6000, 4))
    assert np.all(np.sort(perms, 1) == np.arange(4))
    position = np.stack([(perms == f).argmax(1) for f in range(4)])  # (feature, sample)
    freq = np.stack([(position == j).mean(1) for j in range(4)])
    assert np.abs(freq - 0.25).max() < 5 * np.sqrt(0.25 * 0.75 / 6000)


# ------------------------------------------------------------------ small models: axioms, closed forms


def tiny_relu_net(seed=0) -> jaxsal.ModelParams:
    """conv-ReLU-maxpool-dense on 8x8x2 images, 3 classes, float64."""
    rng = np.random.default_rng(seed)
    v = (jnp.asarray(rng.normal(0, 0.5, (3, 3, 2, 4))), jnp.asarray(0.1 * rng.normal(size=(1, 1, 1, 4))),
         jnp.asarray(rng.normal(0, 0.3, (4 * 4 * 4, 3))))  # fmt: skip

    def f(v, x):
        h = jax.lax.conv_general_dilated(x, v[0], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
        h = jax.nn.relu(h + v[1])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h.reshape(h.shape[0], -1) @ v[2]

    return jaxsal.wrap(f, v, input_shape=(8, 8, 2))


def test_gradient_shap_completeness_in_expectation():
    """sum(attr) is an unbiased estimate of f(x) - mean_b f(b): within 5 standard errors.

    The standard errors come from the per-sample sums, computed here independently
    (the same draws, `jax.grad` of the model at each point), whose mean is sum(attr).
    """
    params = tiny_relu_net()
    rng = np.random.default_rng(5)
    centre = rng.normal(size=(8, 8, 2))  # short segments: the gradient varies, but not wildly
    x, c = centre + 0.15 * rng.normal(size=(2, 8, 8, 2)), np.array([0, 2])
    bs = centre + 0.15 * rng.normal(size=(4, 8, 8, 2))
    samples, key = 4000, jax.random.key(3)
    attr = gradient_shap(params, x, c, key=key, baselines=bs, n_samples=samples, chunk=1000)
    logits = np.asarray(jaxsal.logits(params, np.concatenate([x, bs])))
    fx, fbs = logits[np.arange(2), c], logits[2:][:, c]  # (N,), (B, N)
    delta = fx - fbs.mean(0)
    index, alpha, _ = (np.asarray(a) for a in gradient_shap_draws(key, x.shape, 4, samples))
    b = bs[index]
    a = alpha[..., None, None, None]
    points = (a * x + (1 - a) * b).reshape(-1, 8, 8, 2)
    grads = jax.grad(lambda p: select_class(params.apply(p), jnp.tile(c, samples)).sum())(points)
    per_sample = ((x - b) * np.asarray(grads).reshape(b.shape)).sum((2, 3, 4))  # (S, N)
    np.testing.assert_allclose(np.sum(attr, (1, 2, 3)), per_sample.mean(0), rtol=1e-10)
    se = per_sample.std(0) / np.sqrt(samples)
    assert np.all(np.abs(per_sample.mean(0) - delta) < 5 * se)
    # Given the drawn baselines, only the points on the segments are random: a sharper test.
    residual = per_sample - (fx - np.take_along_axis(fbs, index, axis=0))
    se_r = residual.std(0) / np.sqrt(samples)
    print("delta", delta, "sum", per_sample.mean(0), "se", se, "residual", residual.mean(0), se_r)
    assert np.all(np.abs(residual.mean(0)) < 5 * se_r)
    assert np.all(5 * se_r < 0.15 * np.abs(delta))  # it would see a sum 15% off


@pytest.fixture(scope="module")
def linear():
    """f(x) = flatten(x) @ W + b on 8x8x2 images, 4 classes; x, classes, W as (8, 8, 2, 4)."""
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(8 * 8 * 2, 4)), rng.normal(size=(1, 4))
    params = jaxsal.wrap(lambda v, x: x.reshape(x.shape[0], -1) @ v[0] + v[1],
                         (jnp.asarray(w), jnp.asarray(b)), input_shape=(8, 8, 2))  # fmt: skip
    x = rng.normal(size=(3, 8, 8, 2))
    return params, x, np.array([0, 3, 1]), w.reshape(8, 8, 2, 4)


def test_closed_forms_on_a_linear_model(linear):
    """The Shapley value of a feature of a linear model is its summed w_c * (x - baseline)."""
    params, x, c, w = linear
    base = 0.3
    contrib = (x - base) * np.moveaxis(w[..., c], -1, 0)
    mask = np.arange(64).reshape(8, 8) // 10  # 7 features, the last one smaller
    shap = np.stack([[contrib[n].sum(-1)[mask == k].sum() for k in range(7)] for n in range(3)])
    want = np.repeat(shap[:, mask][..., None], 2, -1)
    kw = dict(key=KEY, feature_mask=mask, baseline=base)
    np.testing.assert_allclose(kernel_shap(params, x, c, n_samples=16, **kw), want, rtol=1e-9)
    np.testing.assert_allclose(lime(params, x, c, n_samples=16, alpha=0.0, **kw), want, rtol=1e-9)
    np.testing.assert_allclose(shapley_value_sampling(params, x, c, n_samples=2, **kw), want,
                               rtol=1e-12)  # fmt: skip
    gs = gradient_shap(params, x, c, key=KEY, baselines=np.full((1, 8, 8, 2), base))
    np.testing.assert_allclose(gs, contrib, rtol=1e-12)


def test_chunked_equals_unchunked():
    params = tiny_relu_net()  # nonlinear, so that every perturbation gives its own score
    x = np.random.default_rng(6).normal(size=(3, 8, 8, 2))
    c = np.array([0, 1, 2])
    mask = np.random.default_rng(7).integers(0, 6, size=(3, 8, 8))  # one mask per image
    kw = dict(key=KEY, feature_mask=mask)
    full = {}
    for method, n in ((kernel_shap, 11), (lime, 11), (shapley_value_sampling, 3)):
        full[method] = method(params, x, c, n_samples=n, **kw)
        chunked = method(params, x, c, n_samples=n, chunk=4, **kw)
        np.testing.assert_allclose(chunked, full[method], rtol=1e-12, atol=1e-14)
    bs = np.random.default_rng(8).normal(size=(3, 8, 8, 2))
    kw = dict(key=KEY, baselines=bs, n_samples=5, stdevs=0.1)
    np.testing.assert_allclose(gradient_shap(params, x, c, chunk=2, **kw),
                               gradient_shap(params, x, c, **kw), rtol=1e-12, atol=1e-14)  # fmt: skip
    # A traced mask needs the number of features.
    traced = jax.jit(lambda m: kernel_shap(params, x, c, key=KEY, feature_mask=m, n_features=6,
                                           n_samples=11))  # fmt: skip
    np.testing.assert_allclose(traced(mask), full[kernel_shap], rtol=1e-12, atol=1e-14)


def test_bad_hyper_parameters(linear):
    params, x, c, _ = linear
    mask = np.arange(64).reshape(8, 8) // 16
    with pytest.raises(
        ValueError, match="kernel_shap is stochastic and needs an explicit PRNG key"
    ):
        kernel_shap(params, x, c, feature_mask=mask)
    with pytest.raises(ValueError, match="lime needs feature_mask="):
        lime(params, x, c, key=KEY)
    with pytest.raises(ValueError, match="n_samples must be an int >= 2 .*all-on and all-off"):
        kernel_shap(params, x, c, key=KEY, feature_mask=mask, n_samples=1)
    with pytest.raises(ValueError, match="n_features must be an int >= 2"):
        kernel_shap(params, x, c, key=KEY, feature_mask=np.zeros((8, 8), int))
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        shapley_value_sampling(params, x, c, key=KEY, feature_mask=mask, chunk=-1)
    with pytest.raises(ValueError, match='unknown distance "l1"'):
        lime(params, x, c, key=KEY, feature_mask=mask, distance="l1")
    with pytest.raises(ValueError, match="kernel_width must be a positive scalar"):
        lime(params, x, c, key=KEY, feature_mask=mask, kernel_width=0.0)
    with pytest.raises(ValueError, match="alpha .* must be a scalar >= 0"):
        lime(params, x, c, key=KEY, feature_mask=mask, alpha=-1.0)
    with pytest.raises(ValueError, match="gradient_shap needs baselines="):
        gradient_shap(params, x, c, key=KEY)
    with pytest.raises(ValueError, match="stdevs must be a non-negative"):
        gradient_shap(params, x, c, key=KEY, baselines=np.zeros((1, 8, 8, 2)), stdevs=-0.1)
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        gradient_shap(params, x, c, key=KEY, baselines=np.zeros((1, 8, 8, 2)), n_samples=0)
