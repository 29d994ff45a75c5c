"""Every interpreter on the user's own model: a Flax Linen module, an NNX module, a plain function.

The same small network is written four times: in PyTorch (the reference for
Captum 0.9 and Zennit 0.5.1), as a Linen module of standard Flax layers, as
an NNX module, and as a plain function of `jax.numpy` / `jax.lax` operations.
It holds every layer kind the graph analysis must recognise: convolutions
with BatchNorm, `relu` as a function, max and average pooling, a residual
sum, a channel concatenation, global mean pooling and a dense head. The
torch weights are copied into the three JAX versions; maps are compared in
float64 (relative error below 1e-8). The torch model uses modules for the
operations that Zennit and Captum treat as layers (ReLU, pooling, the
residual sum as `zennit.layer.Sum`), as a user comparing the libraries would.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax import lax
from torch_ref import to_nchw, to_nhwc, torchvision

import jaxsal
from jaxsal.lrp import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")

SIZE, CH, CLASSES = 16, 3, 5
C = np.array([1, 3])
TOL = 1e-8
LOW, HIGH = -3.0, 3.0  # z-box bounds; inputs lie inside


# ---------------------------------------------------------------- the network, four times


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torchvision()
        from zennit.layer import Sum

        t = torch.nn
        self.conv1, self.bn1, self.relu1 = t.Conv2d(CH, 8, 3, padding=1), t.BatchNorm2d(8), t.ReLU()
        self.pool1 = t.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = t.Conv2d(8, 8, 3, padding=1), t.BatchNorm2d(8), t.ReLU()
        self.conv3, self.bn3 = t.Conv2d(8, 8, 3, padding=1, bias=False), t.BatchNorm2d(8)
        self.sum, self.relu3 = Sum(), t.ReLU()
        self.pool2 = t.AvgPool2d(2)
        self.conv4, self.relu4 = t.Conv2d(8, 8, 1), t.ReLU()
        self.gap = t.AdaptiveAvgPool2d(1)
        self.fc = t.Linear(16, CLASSES)

    def forward(self, x):
        b = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        c = self.relu2(self.bn2(self.conv2(b)))
        c2 = self.bn3(self.conv3(c))
        d = self.relu3(self.sum(torch.stack([c2, b], dim=-1)))
        e = self.pool2(d)
        g = torch.cat([e, self.relu4(self.conv4(e))], dim=1)
        return self.fc(self.gap(g).flatten(1))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        conv = lambda f, k, name, bias=True: nn.Conv(  # noqa: E731
            f, (k, k), padding=((k // 2, k // 2),) * 2, use_bias=bias, name=name
        )
        bn = lambda name: nn.BatchNorm(use_running_average=True, name=name)  # noqa: E731
        b = nn.max_pool(nn.relu(bn("bn1")(conv(8, 3, "conv1")(x))), (2, 2), (2, 2))
        c = nn.relu(bn("bn2")(conv(8, 3, "conv2")(b)))
        d = jax.nn.relu(bn("bn3")(conv(8, 3, "conv3", False)(c)) + b)
        e = nn.avg_pool(d, (2, 2), (2, 2))
        g = jnp.concatenate([e, nn.relu(conv(8, 1, "conv4")(e))], axis=-1)
        return nn.Dense(CLASSES, name="fc")(g.mean(axis=(1, 2)))


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        f64 = {"param_dtype": jnp.float64, "rngs": rngs}
        conv = lambda i, o, k, bias=True: nnx.Conv(  # noqa: E731
            i, o, (k, k), padding=((k // 2, k // 2),) * 2, use_bias=bias, **f64
        )
        self.conv1, self.bn1 = conv(CH, 8, 3), nnx.BatchNorm(8, **f64)
        self.conv2, self.bn2 = conv(8, 8, 3), nnx.BatchNorm(8, **f64)
        self.conv3, self.bn3 = conv(8, 8, 3, False), nnx.BatchNorm(8, **f64)
        self.conv4 = conv(8, 8, 1)
        self.fc = nnx.Linear(16, CLASSES, **f64)

    def __call__(self, x):
        b = nnx.max_pool(nnx.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
        c = nnx.relu(self.bn2(self.conv2(b)))
        d = nnx.relu(self.bn3(self.conv3(c)) + b)
        e = nnx.avg_pool(d, (2, 2), (2, 2))
        g = jnp.concatenate([e, nnx.relu(self.conv4(e))], axis=-1)
        return self.fc(g.mean(axis=(1, 2)))


def function_net(w, x):
    """The network in plain jax.numpy / lax, with a `jaxsal.tap` for Grad-CAM."""

    def ch(a):  # a per-channel vector, broadcast over NHWC
        return a.reshape(1, 1, 1, -1)

    def conv(v, name, k):
        y = lax.conv_general_dilated(v, w[name]["kernel"], (1, 1), ((k // 2, k // 2),) * 2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
        return y + ch(w[name]["bias"]) if "bias" in w[name] else y

    def bn(v, name):
        s = w[name]
        return (v - ch(s["mean"])) / ch(jnp.sqrt(s["var"] + 1e-5)) * ch(s["scale"]) + ch(s["bias"])

    def pool(v, op, init):
        return lax.reduce_window(v, init, op, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    b = pool(jax.nn.relu(bn(conv(x, "conv1", 3), "bn1")), lax.max, -jnp.inf)
    c = jax.nn.relu(bn(conv(b, "conv2", 3), "bn2"))
    d = jnp.maximum(bn(conv(c, "conv3", 3), "bn3") + b, 0.0)
    e = pool(d, lax.add, 0.0) / 4.0
    f = jaxsal.tap("conv4", conv(e, "conv4", 1))
    g = jnp.concatenate([e, jax.nn.relu(f)], axis=-1)
    return g.mean(axis=(1, 2)) @ w["fc"]["kernel"] + w["fc"]["bias"][None]


# ---------------------------------------------------------------- weights from torch


def torch_weights(model) -> dict:
    """{layer: {kernel, bias, scale, mean, var}} in Flax layouts, float64 NumPy."""
    out = {}
    for name, m in model.named_children():
        if isinstance(m, torch.nn.Conv2d):
            out[name] = {"kernel": m.weight.detach().numpy().transpose(2, 3, 1, 0)}
            if m.bias is not None:
                out[name]["bias"] = m.bias.detach().numpy()
        elif isinstance(m, torch.nn.BatchNorm2d):
            out[name] = {"scale": m.weight.detach().numpy(), "bias": m.bias.detach().numpy(),
                         "mean": m.running_mean.numpy(), "var": m.running_var.numpy()}  # fmt: skip
        elif isinstance(m, torch.nn.Linear):
            out[name] = {"kernel": m.weight.detach().numpy().T, "bias": m.bias.detach().numpy()}
    return jax.tree.map(jnp.asarray, out)


@pytest.fixture(scope="module")
def torch_net():
    torch.manual_seed(0)
    model = TorchNet().double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def linen_model(w):
    module = LinenNet()
    params = {k: {p: v for p, v in d.items() if p in ("kernel", "bias", "scale")}
              for k, d in w.items()}  # fmt: skip
    stats = {k: {"mean": d["mean"], "var": d["var"]} for k, d in w.items() if "mean" in d}
    return jaxsal.wrap(module, {"params": params, "batch_stats": stats},
                       input_shape=(SIZE, SIZE, CH))  # fmt: skip


def nnx_model(w):
    model = NnxNet(nnx.Rngs(0))
    for name, d in w.items():
        layer = getattr(model, name)
        for p, v in d.items():
            if p in ("mean", "var"):  # NNX keeps BatchNorm statistics in float32: replace them
                setattr(layer, p, nnx.BatchStat(v))
            else:
                getattr(layer, p)[...] = v
    return jaxsal.wrap(model, input_shape=(SIZE, SIZE, CH))


def function_model(w):
    return jaxsal.wrap(function_net, w, input_shape=(SIZE, SIZE, CH))


BUILDERS = {"linen": linen_model, "nnx": nnx_model, "function": function_model}
GRADCAM_LAYER = {"linen": "conv4", "nnx": "conv4", "function": "conv4"}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def user(request, torch_net):
    return request.param, BUILDERS[request.param](torch_weights(torch_net))


def inputs():
    return np.random.default_rng(0).uniform(-2.0, 2.0, (2, SIZE, SIZE, CH))


def rel_err(got, ref) -> float:
    return float(np.abs(np.asarray(got) - ref).max() / np.abs(ref).max())


def test_logits_and_inferred_shape(user, torch_net):
    kind, params = user
    assert params.spec.kind == kind and params.num_classes == CLASSES and params.in_channels == CH
    x = inputs()
    ref = torch_net(to_nchw(x)).detach().numpy()
    assert rel_err(jaxsal.logits(params, x), ref) < 1e-12


# ---------------------------------------------------------------- Captum


def captum(torch_net, method: str, x, c):
    from captum import attr

    xt = to_nchw(x).requires_grad_()
    target = torch.as_tensor(c)
    if method == "gradcam":
        cam = attr.LayerGradCam(torch_net, torch_net.conv4)
        out = cam.attribute(xt, target=target, relu_attributions=True)
        return to_nhwc(out)
    cls = {"simple_grad": attr.Saliency, "input_x_grad": attr.InputXGradient,
           "guided_backprop": attr.GuidedBackprop, "deconvnet": attr.Deconvolution,
           "integrated_gradients": attr.IntegratedGradients}[method]  # fmt: skip
    kwargs = {"abs": False} if method == "simple_grad" else {}
    return to_nhwc(cls(torch_net).attribute(xt, target=target, **kwargs))


@pytest.mark.parametrize("method", ["simple_grad", "input_x_grad", "guided_backprop", "deconvnet",
                                    "integrated_gradients", "gradcam"])  # fmt: skip
def test_gradient_methods_match_captum(user, torch_net, method):
    kind, params = user
    x = inputs()
    ref = captum(torch_net, method, x, C)
    fn = jax.jit(lambda p, x: getattr(jaxsal, method)(
        p, x, C, **({"layer": GRADCAM_LAYER[kind]} if method == "gradcam" else {})))  # fmt: skip
    got = fn(params, x)
    err = rel_err(got, ref)
    print(f"{kind} {method}: {err:.1e}")
    assert err < TOL


def test_guided_backprop_differs_from_the_gradient(user):
    """The failure this guards against: rules silently falling back to the plain gradient."""
    _, params = user
    x = inputs()
    g, gb = jaxsal.simple_grad(params, x, C), jaxsal.guided_backprop(params, x, C)
    assert rel_err(g, np.asarray(gb)) > 0.1


# ---------------------------------------------------------------- Zennit


def zennit(torch_net, name, x, c):
    torchvision()
    from zennit import composites
    from zennit.canonizers import SequentialMergeBatchNorm

    cls = {"epsilon_plus": composites.EpsilonPlus,
           "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1}.get(name)  # fmt: skip
    canonizers = [SequentialMergeBatchNorm()]
    if cls is None:
        bound = lambda v: torch.full((1, CH, 1, 1), v, dtype=torch.float64)  # noqa: E731
        composite = composites.EpsilonGammaBox(low=bound(LOW), high=bound(HIGH),
                                               canonizers=canonizers)  # fmt: skip
    else:
        composite = cls(canonizers=canonizers)
    bns = [m for m in torch_net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.eps for m in bns]
    xt = to_nchw(x).requires_grad_()
    try:
        with composite.context(torch_net) as modified:
            for m in bns:  # Zennit's merged BatchNorm is x / sqrt(1 + eps): make it exact
                m.eps = 0.0
            out = modified(xt)
            start = torch.zeros_like(out)
            idx = torch.arange(len(c))
            start[idx, torch.as_tensor(c)] = out[idx, torch.as_tensor(c)].detach()
            (r,) = torch.autograd.grad(out, xt, start)
    finally:
        for m, eps in zip(bns, saved):
            m.eps = eps
    return to_nhwc(r)


COMPOSITES = {"epsilon_plus": EpsilonPlus(), "epsilon_alpha2_beta1": EpsilonAlpha2Beta1(),
              "epsilon_gamma_box": EpsilonGammaBox(low=LOW, high=HIGH)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_lrp_matches_zennit(user, torch_net, name):
    kind, params = user
    x = inputs()
    ref = zennit(torch_net, name, x, C)
    got = jax.jit(lambda p, x: jaxsal.lrp.attribute(p, x, C, composite=COMPOSITES[name]))(params, x)
    err = rel_err(got, ref)
    print(f"{kind} lrp {name}: {err:.1e}")
    assert err < TOL


def test_lrp_is_not_logit_times_gradient(user):
    _, params = user
    x = inputs()
    r = jaxsal.lrp.attribute(params, x, C, composite="epsilon_plus")
    gxi = jaxsal.input_x_grad(params, x, C)
    assert rel_err(r, np.asarray(gxi)) > 0.1


def test_layer_names_from_the_module_tree(user):
    kind, params = user
    names = jaxsal.layer_names(params)
    if kind == "function":
        assert names == ["conv4"]
    else:
        assert {"conv1", "bn1", "conv4", "fc"} <= set(names)
    with pytest.raises(jaxsal.LayerNotFoundError, match="conv9"):
        jaxsal.gradcam(params, inputs(), 0, layer="conv9")


# ---------------------------------------------------------------- second order


def fd_check(f, params, h=1e-6, directions=2):
    grad = jax.jit(jax.grad(f))(params)
    shifted = jax.jit(lambda p, d, t: f(jax.tree.map(lambda a, b: a + t * b, p, d)))
    rng = np.random.default_rng(3)
    errors = []
    for _ in range(directions):
        d = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=np.shape(a)) * 0.1), params)
        exact = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(d)))
        fd = (shifted(params, d, h) - shifted(params, d, -h)) / (2 * h)
        errors.append(float(abs(fd - exact) / abs(exact)))
    return errors


@pytest.mark.parametrize("method", ["gradcam", "guided_backprop", "lrp"])
def test_second_order_against_finite_differences(user, method):
    """The gradient of a map penalty with respect to the parameters, softplus model (beta 10)."""
    kind, params = user
    params = params.with_beta(10.0)
    x = inputs()
    w = jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 1), jnp.float64)

    def penalty(p):
        if method == "gradcam":
            h = jaxsal.gradcam(p, x, C, layer=GRADCAM_LAYER[kind], relu=False)
            return jnp.sum(jnp.tanh(h) ** 2)
        fn = jaxsal.guided_backprop if method == "guided_backprop" else (
            lambda p, x, c: jaxsal.lrp.attribute(p, x, c, composite="epsilon_plus"))  # fmt: skip
        return jnp.sum(jnp.abs(fn(p, x, C)).sum(-1, keepdims=True) * w)

    errors = fd_check(penalty, params)
    assert max(errors) < 1e-5, errors


# ---------------------------------------------------------------- refusals


def tanh_net(w, x):
    y = lax.conv_general_dilated(x, w["k"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
    return jnp.tanh(y).mean(axis=(1, 2)) @ w["d"]


@jax.custom_vjp
def strange(x):
    return jax.nn.relu(x) * 2.0


strange.defvjp(lambda x: (strange(x), x), lambda x, g: (2.0 * g * (x > 0),))


def custom_net(w, x):
    y = lax.conv_general_dilated(x, w["k"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
    return strange(y).mean(axis=(1, 2)) @ w["d"]


@pytest.mark.parametrize("net,op", [(tanh_net, "tanh"), (custom_net, "custom_vjp_call")])
@pytest.mark.parametrize("method", ["lrp", "guided_backprop", "deconvnet"])
def test_unsupported_operations_are_refused(net, op, method):
    w = {"k": jnp.ones((3, 3, CH, 4)), "d": jnp.ones((4, CLASSES))}
    params = jaxsal.wrap(net, w, input_shape=(SIZE, SIZE, CH))
    fn = jaxsal.lrp.attribute if method == "lrp" else getattr(jaxsal, method)
    with pytest.raises(jaxsal.UnsupportedOperation, match=rf"no rule for the operation `{op}"):
        fn(params, inputs(), 0)
    jaxsal.simple_grad(params, inputs(), 0)  # gradient methods need no rule


def test_wrap_refuses_what_it_cannot_use():
    with pytest.raises(TypeError, match="variables dict"):
        jaxsal.wrap(LinenNet(), None, input_shape=(SIZE, SIZE, CH))
    with pytest.raises(ValueError, match=r"input_shape must be \(H, W, C\)"):
        jaxsal.wrap(function_net, {}, input_shape=(SIZE, SIZE))
    with pytest.raises(ValueError, match="logits of shape"):
        jaxsal.wrap(lambda x: x.mean(), input_shape=(SIZE, SIZE, CH))
    with pytest.raises(TypeError, match="jaxsal.wrap"):
        jaxsal.simple_grad({"params": {}}, inputs(), 0)
