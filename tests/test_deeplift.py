"""DeepLIFT and DeepLiftShap: parity with Captum 0.9 (float64), summation-to-delta, errors.

Reference: torchvision VGG16 and ResNet50 with random weights, randomised
BatchNorm statistics and non-zero biases, converted by
`weights_convert.from_torchvision`. Relative error `max|ours - ref| / max|ref|`
must stay below 1e-8. Captum needs three changes to its models, none of which
changes their function:

- torchvision's Bottleneck calls one `nn.ReLU` three times; Captum's DeepLift
  keeps one input / output per module, so each block gets three ReLUs.
- Each `nn.MaxPool2d` reads its input through a copy (`x.clone()`). Without it
  the ReLU before the pooling and the pooling hook the same tensor, and the
  ReLU records its output gradient *before* the pooling's hook rewrites it:
  stock Captum then runs the rescale rule with plain max-pooling gradients
  (`test_stock_captum_skips_its_max_pool_rule`), and its maps do not sum to
  f(x) - f(baseline).
- Its `maxpool` rule unpools with `F.max_unpool2d`, which keeps one value
  where overlapping windows (ResNet's 3x3 / 2 stem pooling) share an arg-max;
  `summed_unpool` adds them, as the rule's derivation (and summation-to-delta)
  needs. VGG16's windows do not overlap and use Captum's unpooling as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import DeepLift, DeepLiftShap
from parity import randomize_biases, relative_error
from torch_ref import to_nchw, to_nhwc, torch_model, torchvision

import jaxsal
import weights_convert
from jaxsal.forward import forward, select_class
from jaxsal.graph import UnsupportedOperation
from jaxsal.interpreters.deeplift import deeplift, deeplift_shap, rescale

pytestmark = pytest.mark.filterwarnings(
    "ignore:Setting forward, backward hooks:UserWarning",
    "ignore:Setting backward hooks:UserWarning",
)

TOL = 1e-8
SIZE = 32
CLASSES = np.array([3, 7])


class Clone(torch.nn.Module):
    def forward(self, x):
        return x.clone()


def _bottleneck_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    return self.relu3(self.bn3(self.conv3(out)) + identity)


def captum_ready(model: torch.nn.Module, copy_pool_inputs: bool = True) -> torch.nn.Module:
    """One ReLU module per call, and each max pooling reading a copy of its input."""
    bottleneck = torchvision().models.resnet.Bottleneck
    for m in list(model.modules()):
        if isinstance(m, bottleneck):
            m.relu1, m.relu2, m.relu3 = torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.ReLU()
            m.forward = types.MethodType(_bottleneck_forward, m)
        for name, child in list(m.named_children()):
            if copy_pool_inputs and isinstance(child, torch.nn.MaxPool2d):
                setattr(m, name, torch.nn.Sequential(Clone(), child))
    return model


def summed_unpool(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """`F.max_unpool2d` that adds the values of windows sharing an arg-max."""
    n, c = input.shape[:2]
    h, w = output_size[-2:]
    out = input.new_zeros(n, c, h * w)
    out.scatter_add_(2, indices.flatten(2), input.flatten(2))
    return out.view(n, c, h, w)


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    stock: torch.nn.Module  # torchvision's model as it is
    model: torch.nn.Module  # the same function, ready for Captum's DeepLift
    params: jaxsal.ModelParams
    x: np.ndarray  # NHWC float64
    baseline: np.ndarray

    def logit(self, x) -> np.ndarray:
        with torch.no_grad():
            return self.stock(to_nchw(x)).numpy()[np.arange(len(CLASSES)), CLASSES]


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def case(request) -> Case:
    arch = request.param
    stock = torch_model(arch, num_classes=10)
    randomize_biases(stock)
    params = weights_convert.from_torchvision(arch, stock.state_dict(), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, SIZE, SIZE, 3))
    baseline = 0.3 * rng.normal(size=(2, SIZE, SIZE, 3))
    return Case(arch, stock, captum_ready(copy.deepcopy(stock)), params, x, baseline)


def test_deeplift_parity_and_summation_to_delta(case, monkeypatch):
    monkeypatch.setattr(torch.nn.functional, "max_unpool2d", summed_unpool)
    ref = DeepLift(case.model).attribute(
        to_nchw(case.x).requires_grad_(), baselines=to_nchw(case.baseline),
        target=torch.from_numpy(CLASSES),
    )  # fmt: skip
    # Through the user's own jit: VGG16's weights as an argument, not as constants.
    run = jax.jit(lambda p, x, c, b: deeplift(p, x, c, baseline=b))
    ours = np.asarray(run(case.params, case.x, jnp.asarray(CLASSES), case.baseline))
    assert relative_error(ours, ref) < TOL
    delta = case.logit(case.x) - case.logit(case.baseline)
    np.testing.assert_allclose(ours.sum(axis=(1, 2, 3)), delta, rtol=1e-9, atol=1e-10)


def test_deeplift_shap_parity(case, monkeypatch):
    monkeypatch.setattr(torch.nn.functional, "max_unpool2d", summed_unpool)
    baselines = 0.5 * np.random.default_rng(1).normal(size=(3, SIZE, SIZE, 3))
    ref = DeepLiftShap(case.model).attribute(
        to_nchw(case.x).requires_grad_(), baselines=to_nchw(baselines),
        target=torch.from_numpy(CLASSES),
    )  # fmt: skip
    run = jax.jit(lambda p, x, c, b: deeplift_shap(p, x, c, baselines=b))
    ours = run(case.params, case.x, jnp.asarray(CLASSES), baselines)
    assert relative_error(ours, ref) < TOL
    mean_ref = np.mean([case.logit(np.broadcast_to(b, case.x.shape)) for b in baselines], 0)
    delta = case.logit(case.x) - mean_ref
    np.testing.assert_allclose(np.sum(ours, axis=(1, 2, 3)), delta, rtol=1e-9, atol=1e-10)


def test_stock_captum_skips_its_max_pool_rule(case):
    """Stock Captum = the rescale rule at ReLUs, the plain gradient through max pooling."""
    if case.arch != "resnet50":
        pytest.skip("one model shows it (each costs a compilation)")
    stock = captum_ready(copy.deepcopy(case.stock), copy_pool_inputs=False)
    ref = DeepLift(stock).attribute(
        to_nchw(case.x).requires_grad_(), baselines=to_nchw(case.baseline),
        target=torch.from_numpy(CLASSES),
    )  # fmt: skip
    n = len(CLASSES)

    def plain_max_pool(p, x, b, c):
        def objective(v):
            return select_class(forward(p, v, rectifier=rescale)[0][:n], c).sum()

        return (x - b) * jax.grad(objective)(jnp.concatenate([x, b]))[:n]

    ours = jax.jit(plain_max_pool)(case.params, case.x, case.baseline, jnp.asarray(CLASSES))
    assert relative_error(ours, ref) < TOL
    # ... and so its maps do not sum to f(x) - f(baseline); jaxsal's do (above).
    delta = case.logit(case.x) - case.logit(case.baseline)
    assert np.abs(to_nhwc(ref).sum(axis=(1, 2, 3)) - delta).max() > 1e-3


# ------------------------------------------------------------------ a tiny model, axioms, errors


def tiny_model(act=jax.nn.relu, seed=0) -> jaxsal.ModelParams:
    """conv-act-maxpool(3x3/2, overlapping)-conv-act-maxpool(2x2)-mean-dense, float64."""
    rng = np.random.default_rng(seed)
    v = {
        "w1": rng.normal(0, 0.5, (3, 3, 2, 6)), "b1": 0.1 * rng.normal(size=(1, 1, 1, 6)),
        "w2": rng.normal(0, 0.3, (3, 3, 6, 8)), "b2": 0.1 * rng.normal(size=(1, 1, 1, 8)),
        "w3": rng.normal(0, 0.3, (8, 5)), "b3": 0.1 * rng.normal(size=(1, 5)),
    }  # fmt: skip
    v = jax.tree.map(jnp.asarray, v)

    def f(v, x):
        dn = ("NHWC", "HWIO", "NHWC")
        h = jax.lax.conv_general_dilated(x, v["w1"], (1, 1), "SAME", dimension_numbers=dn)
        h = act(h + v["b1"])
        pad = ((0, 0), (1, 1), (1, 1), (0, 0))
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pad)
        h = jax.lax.conv_general_dilated(h, v["w2"], (1, 1), "SAME", dimension_numbers=dn)
        h = act(h + v["b2"])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return h.mean(axis=(1, 2)) @ v["w3"] + v["b3"]

    return jaxsal.wrap(f, v, input_shape=(12, 12, 2))


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(3)
    return tiny_model(), rng.normal(size=(3, 12, 12, 2)), np.array([0, 2, 4])


def test_summation_to_delta_with_overlapping_max_pooling(tiny):
    params, x, c = tiny
    b = np.random.default_rng(4).normal(size=x.shape[1:])
    attr = deeplift(params, x, c, baseline=b)
    f = np.asarray(jaxsal.logits(params, x))[np.arange(3), c]
    fb = np.asarray(jaxsal.logits(params, np.broadcast_to(b, x.shape)))[np.arange(3), c]
    np.testing.assert_allclose(np.sum(attr, axis=(1, 2, 3)), f - fb, rtol=1e-12, atol=1e-13)
    # The rule is not the gradient: x * grad does not sum to the difference here.
    grad_sums = np.sum((x - b) * jaxsal.simple_grad(params, x, c), (1, 2, 3))
    assert np.abs(grad_sums - (f - fb)).max() > 1e-3


def test_deeplift_of_the_baseline_itself_is_zero_and_vmap_agrees(tiny):
    params, x, c = tiny
    np.testing.assert_array_equal(deeplift(params, x, c, baseline=x), 0.0)
    b = np.zeros_like(x)
    one = jax.vmap(lambda xi, bi, ci: deeplift(params, xi[None], ci, baseline=bi)[0])(x, b, c)
    np.testing.assert_allclose(one, deeplift(params, x, c, baseline=b), rtol=1e-12, atol=1e-14)


def test_deeplift_shap_chunks_and_mean(tiny):
    params, x, c = tiny
    bs = np.random.default_rng(5).normal(size=(3, 12, 12, 2))
    full = deeplift_shap(params, x, c, baselines=bs)
    np.testing.assert_allclose(deeplift_shap(params, x, c, baselines=bs, chunk=2), full,
                               rtol=1e-12, atol=1e-14)  # fmt: skip
    each = np.mean([deeplift(params, x, c, baseline=b) for b in bs], axis=0)
    np.testing.assert_allclose(full, each, rtol=1e-12, atol=1e-14)


def test_deeplift_is_differentiable_again(tiny):
    params, x, c = tiny
    loss = lambda p: jnp.sum(deeplift(p, x, c) ** 2)
    g = jax.grad(loss)(params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g))
    assert any(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(g))


def test_bad_hyper_parameters(tiny):
    params, x, c = tiny
    with pytest.raises(ValueError, match="baseline of shape .* does not broadcast"):
        deeplift(params, x, c, baseline=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="needs baselines="):
        deeplift_shap(params, x, c)
    with pytest.raises(ValueError, match=r"baselines of shape \(2, 7, 7, 2\) do not match"):
        deeplift_shap(params, x, c, baselines=np.zeros((2, 7, 7, 2)))
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        deeplift_shap(params, x, c, baselines=np.zeros((2, 12, 12, 2)), chunk=0)
    with pytest.raises(UnsupportedOperation, match="deeplift has no rule for .*tanh"):
        deeplift(tiny_model(jnp.tanh), x, c)
