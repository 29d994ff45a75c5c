"""LRP maps against Zennit 0.5.1 on converted torchvision models; canonizers; conservation.

Zennit runs in float64 on the torchvision model with random weights (BatchNorm
statistics randomised), with its own canonizers for ResNet; jaxsal runs on the
converted model. The starting relevance is the target logit in both (Zennit:
`grad_outputs = one_hot * logit`).

Zennit's `MergeBatchNorm` leaves each merged BatchNorm as `x / sqrt(1 + eps)`
(running_var set to 1, eps kept), not the identity: a 5e-6 relative change per
BatchNorm, about 2e-4 over ResNet50. The reference sets those BatchNorms' eps
to 0, making its canonised model exact, as jaxsal's fold is.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch_ref import to_nchw, to_nhwc, torch_model, torchvision

import jaxsal
from jaxsal.graph import analyse, trace_graph
from jaxsal.lrp import DEFAULT_CANONIZERS, EpsilonPlus, canonized_logits, get_composite
from jaxsal.lrp import attribute as lrp
from jaxsal.lrp.attribution import lrp_plan
from jaxsal.lrp.rules import IMAGENET_HIGH, IMAGENET_LOW, IMAGENET_MEAN, IMAGENET_STD
from jaxsal.models.layers import BatchNorm
from weights_convert import from_torchvision

COMPOSITES = ["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_gamma_box"]
SIZE = 96
CLASSES = np.array([1, 3])


def images(n, size, seed=0):
    """Pixels in [0, 1] normalised like torchvision's inputs (inside the z-box bounds)."""
    u = np.random.default_rng(seed).uniform(size=(n, size, size, 3))
    return (u - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def pair(request):
    arch = request.param
    model = torch_model(arch, num_classes=10)
    params = from_torchvision(arch, model.state_dict(), dtype=jnp.float64)
    return arch, model, params


def zennit_composite(name, arch):
    torchvision()
    from zennit import composites
    from zennit.torchvision import ResNetCanonizer

    canonizers = [ResNetCanonizer()] if arch.startswith("resnet") else []
    if name == "epsilon_gamma_box":
        bound = lambda v: torch.tensor(v, dtype=torch.float64).reshape(1, 3, 1, 1)  # noqa: E731
        return composites.EpsilonGammaBox(
            low=bound(IMAGENET_LOW), high=bound(IMAGENET_HIGH), canonizers=canonizers
        )
    cls = {"epsilon_plus": composites.EpsilonPlus, "epsilon_plus_flat": composites.EpsilonPlusFlat,
           "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1}[name]  # fmt: skip
    return cls(canonizers=canonizers)


@contextlib.contextmanager
def exact_merged_batch_norm(model):
    """Zennit's merged BatchNorms become exact identities (see the module docstring)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.eps for m in bns]
    for m in bns:
        m.eps = 0.0
    try:
        yield
    finally:
        for m, eps in zip(bns, saved):
            m.eps = eps


def zennit_lrp(model, x, c, name, arch):
    composite = zennit_composite(name, arch)
    xt = to_nchw(x).requires_grad_()
    with composite.context(model) as modified, exact_merged_batch_norm(model):
        out = modified(xt)
        start = torch.zeros_like(out)
        idx = torch.arange(len(c))
        start[idx, torch.as_tensor(c)] = out[idx, torch.as_tensor(c)].detach()
        (r,) = torch.autograd.grad(out, xt, start)
    return to_nhwc(r)


@pytest.mark.parametrize("name", COMPOSITES)
def test_parity_with_zennit(pair, name):
    arch, model, params = pair
    x = images(2, SIZE)
    ref = zennit_lrp(model, x, CLASSES, name, arch)
    got = np.asarray(lrp(params, x, CLASSES, composite=name))
    err = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"parity {arch} {name}: max abs diff / max |R| = {err:.2e}")
    assert err < 1e-8


def zennit_paper_composite(arch):
    """The fooling paper's LRP-Composite from Zennit's building blocks, BatchNorm unfolded."""
    torchvision()
    from zennit.canonizers import CompositeCanonizer
    from zennit.composites import LayerMapComposite
    from zennit.core import BasicHook, ParamMod, stabilize
    from zennit.layer import Sum
    from zennit.rules import Epsilon, NoMod, Pass
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution

    def norm_plus(eps):
        return BasicHook(
            input_modifiers=[lambda a: a.clamp(min=0)],
            param_modifiers=[NoMod(param_keys=[])],
            output_modifiers=[lambda o: o],
            gradient_mapper=lambda g, outs: [g / (outs[0] + eps)],
            reducer=lambda ins, gs: ins[0] * gs[0],
        )

    conv = BasicHook(  # z = conv(x+, w+) + conv(x-, w-) + b, stabiliser 0.01 sign(z)
        input_modifiers=[lambda a: a.clamp(min=0), lambda a: a.clamp(max=0)],
        param_modifiers=[
            ParamMod(lambda w, name: w.clamp(min=0) if name == "weight" else w),
            ParamMod(lambda w, name: w.clamp(max=0), zero_params=["bias"]),
        ],
        output_modifiers=[lambda o: o] * 2,
        gradient_mapper=lambda g, outs: [g / stabilize(outs[0] + outs[1], 0.01)] * 2,
        reducer=lambda ins, gs: ins[0] * gs[0] + ins[1] * gs[1],
    )
    layer_map = [(Activation, Pass()), (BatchNorm, Pass()), (AvgPool, norm_plus(1e-8)),
                 (Sum, norm_plus(1e-12)), (Convolution, conv), (torch.nn.Linear, Epsilon(0.01))]  # fmt: skip
    sums = [ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]  # no BatchNorm merge
    canonizers = [CompositeCanonizer(sums)] if arch.startswith("resnet") else []
    return LayerMapComposite(layer_map, canonizers=canonizers)


def test_paper_composite_matches_zennit_hooks(pair):
    """The paper's composite and behaviour (BatchNorm passes relevance, no folding)."""
    arch, model, params = pair
    x = images(2, SIZE, seed=2)
    xt = to_nchw(x).requires_grad_()
    with zennit_paper_composite(arch).context(model) as modified:
        out = modified(xt)
        start = torch.zeros_like(out)
        idx = torch.arange(2)
        start[idx, torch.as_tensor(CLASSES)] = out[idx, torch.as_tensor(CLASSES)].detach()
        (ref,) = torch.autograd.grad(out, xt, start)
    ref = to_nhwc(ref)
    got = np.asarray(lrp(params, x, CLASSES, composite="paper", canonizers=()))
    err = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"parity {arch} paper (BatchNorm unfolded): {err:.2e}")
    assert err < 1e-8


@pytest.mark.parametrize("arch", ["resnet50", "densenet121", "mobilenet_v2"])
def test_canonizers_leave_logits_unchanged(arch):
    params = from_torchvision(arch, torch_model(arch).state_dict(), dtype=jnp.float64)
    x = images(2, 72)
    ref = jaxsal.logits(params, x)
    got = jax.jit(canonized_logits)(params, x)
    assert float(jnp.abs(got - ref).max()) < 1e-10 * float(jnp.abs(ref).max())


def _graph(arch):
    params = jax.eval_shape(lambda k: jaxsal.init(arch, k), jax.random.key(0))
    return params, trace_graph(params, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))


def test_fold_plan_covers_every_batch_norm_after_a_conv():
    """ResNet50 and MobileNetV2: all BatchNorms fold; DenseNet121: norm0 and every norm2."""
    folded = {}
    for arch in ("resnet50", "densenet121", "mobilenet_v2"):
        params, graph = _graph(arch)
        plan = lrp_plan(get_composite("paper"), DEFAULT_CANONIZERS, False)(graph)
        layers = plan.analysis.layers
        folded[arch] = [layers[i].name for i in plan.folds.values()]
        assert all(layers[i].cls is BatchNorm for i in plan.folds.values())
        assert all(layers[i].kind == "conv" for i in plan.folds)
    assert len(folded["resnet50"]) == 53 == len(bns_of("resnet50"))
    assert len(folded["mobilenet_v2"]) == 52 == len(bns_of("mobilenet_v2"))
    dense = folded["densenet121"]
    assert len(dense) == 1 + 58 and "features.norm0" in dense
    assert all(n == "features.norm0" or n.endswith(".norm2") for n in dense)


def bns_of(arch):
    _, graph = _graph(arch)
    return [layer.name for layer in analyse(graph, False).layers if layer.cls is BatchNorm]


def bias_free(params):
    """Every bias and BatchNorm mean set to zero: all folded biases vanish, LRP conserves."""

    def zero(path, a):
        last = path[-1].key
        return jnp.zeros_like(a) if last in ("bias", "mean") else a

    return params.replace(
        params=jax.tree_util.tree_map_with_path(zero, params.params),
        state=jax.tree_util.tree_map_with_path(zero, params.state),
    )


@pytest.mark.parametrize("arch", jaxsal.models.registry.TORCHVISION_ARCHITECTURES)
def test_conservation_epsilon_plus(arch):
    """Epsilon and z-plus on a bias-free network: the input relevance sums to the target logit.

    For DenseNet121 (no Zennit counterpart for the concatenations) and
    MobileNetV2 this is the reference; it also shows every architecture runs.
    Stabilisers of 1e-20: Zennit's 1e-6 would absorb a share eps / z of the
    relevance, large for these random-weight logits (1e-2 for VGG, 1e-9 for
    MobileNetV2).
    """
    composite = EpsilonPlus(epsilon=1e-20, stabilizer=1e-20)
    params = bias_free(from_torchvision(arch, torch_model(arch).state_dict(), dtype=jnp.float64))
    x = images(2, 72, seed=1)
    logits = np.asarray(jaxsal.logits(params, x))[np.arange(2), CLASSES]
    r = np.asarray(lrp(params, x, CLASSES, composite=composite))
    assert r.shape == x.shape and np.all(np.isfinite(r))
    print(f"conservation {arch}: sum R = {r.sum((1, 2, 3))}, logits = {logits}")
    np.testing.assert_allclose(r.sum((1, 2, 3)), logits, rtol=1e-9)
    if arch == "densenet121":  # LRP_T at the paper's target layer conserves too
        rt = np.asarray(lrp(params, x, CLASSES, composite=composite, layer="target"))
        assert rt.shape[-1] == 992
        np.testing.assert_allclose(rt.sum((1, 2, 3)), logits, rtol=1e-9)
