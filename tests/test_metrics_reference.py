"""The tiny CNN that the metrics tests share, in torch (for Quantus and Captum) and in JAX.

`reference(in_channels)` builds one network twice in float64: a torch module
(conv 3x3, ReLU, max pool, conv, ReLU, max pool, conv, ReLU, global average
pool, linear; about 3,900 parameters, random weights, eval mode) and the same
weights in jaxsal's `SmallCNN`, NHWC. Quantus takes NCHW NumPy batches and
torch models, so the tests transpose at the boundary (`nchw`, `nchw_index`).
The tests of this file check that the two networks and their gradient
explanations agree.
"""

from __future__ import annotations

import contextlib
import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import init_module
from weights_convert.torch_reference import torchvision

torchvision()  # torchvision's C ops must be defined before Quantus imports it

WIDTHS = (8, "M", 16, "M", 16)
NUM_CLASSES = 10


class _Fresh:
    """`reset_parameters` copies preset weights when `fresh` is set (jaxsal's fresh draw)."""

    fresh = None

    def reset_parameters(self):
        if self.fresh is None:
            return super().reset_parameters()
        with torch.no_grad():
            self.weight.copy_(self.fresh[0])
            self.bias.copy_(self.fresh[1])


class FreshConv(_Fresh, torch.nn.Conv2d):
    pass


class FreshLinear(_Fresh, torch.nn.Linear):
    pass


class TorchTiny(torch.nn.Module):
    """torchvision-VGG layout, so module paths match jaxsal's (features.0, ..., classifier)."""

    def __init__(self, in_channels: int):
        super().__init__()
        layers, c = [], in_channels
        for v in WIDTHS:
            if v == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [FreshConv(c, v, 3, padding=1), torch.nn.ReLU()]
                c = v
        self.features = torch.nn.Sequential(*layers)
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = FreshLinear(c, NUM_CLASSES)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def to_jax(module: torch.nn.Module, params):
    """`params` (a jaxsal ModelParams of the same layout) with the torch module's weights."""
    tree = {}
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            w = m.weight.detach().numpy().transpose(2, 3, 1, 0)
        elif isinstance(m, torch.nn.Linear):
            w = m.weight.detach().numpy().T
        else:
            continue
        node = tree
        for part in name.split("."):
            node = node.setdefault(part, {})
        node.update(kernel=jnp.asarray(w), bias=jnp.asarray(m.bias.detach().numpy()))
    assert jax.tree.structure(tree) == jax.tree.structure(params.params)
    return params.replace(params=tree)


def to_torch(params, module: torch.nn.Module) -> dict:
    """(weight, bias) tensors of each torch layer from a jaxsal ModelParams."""
    out = {}
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            node = params.params
            for part in name.split("."):
                node = node[part]
            k = np.asarray(node["kernel"])
            w = k.transpose(3, 2, 0, 1) if k.ndim == 4 else k.T
            out[name] = (torch.from_numpy(w.copy()), torch.from_numpy(np.array(node["bias"])))
    return out


def load_quantus():
    """Quantus 0.6.0 (imported here, after torchvision's ops are defined)."""
    import quantus

    return quantus


@contextlib.contextmanager
def float64_torch():
    """Quantus builds its tensors with `torch.Tensor(x)`: the default dtype decides."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@functools.cache
def reference(in_channels: int = 3, seed: int = 0) -> SimpleNamespace:
    """The torch and JAX networks, explainers and a batch of two 16x16 images."""
    with float64_torch():
        torch.manual_seed(seed)
        net = TorchTiny(in_channels).eval()
        with torch.no_grad():  # twice torch's initial scale: predictions that depend on x
            for m in net.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                    m.weight.mul_(2.0)
    params = init_module(
        SmallCNN(num_classes=NUM_CLASSES, in_channels=in_channels, widths=WIDTHS),
        jax.random.key(seed),
        dtype=jnp.float64,
    )
    params = to_jax(net, params)
    rng = np.random.default_rng(seed)
    # noise around a colour per image; images 1 and 2 get different classes
    x = rng.normal(size=(8, 16, 16, in_channels)) * 0.5 + rng.normal(size=(8, 1, 1, in_channels))
    x = x[1:3] * np.array([1.0, 1.5])[:, None, None, None]
    with torch.no_grad():
        y = net(torch.from_numpy(nchw(x))).numpy().argmax(axis=1)

    def model(x):
        import jaxsal

        return jaxsal.logits(params, x)

    def explain_params(p, x, y, key):
        """Gradient of the class logit, summed over channels: (N, H, W)."""
        import jaxsal

        score = lambda x: jnp.take_along_axis(jaxsal.logits(p, x), y[:, None], 1).sum()  # noqa: E731
        return jax.grad(score)(x).sum(axis=-1)

    def explain(x, y, key):
        return explain_params(params, x, y, key)

    a = np.asarray(explain(jnp.asarray(x), jnp.asarray(y), None))
    return SimpleNamespace(
        net=net, params=params, model=model, explain=explain, explain_params=explain_params,
        x=x, y=y, a=a,
    )  # fmt: skip


def torch_gradient(model, inputs, targets, **kwargs) -> np.ndarray:
    """Quantus's `explain_func`: the class logit's input gradient, summed over channels."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float64).requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        out[torch.arange(len(x)), torch.as_tensor(np.asarray(targets))].sum().backward()
    return x.grad.sum(dim=1, keepdim=True).numpy()


def nchw(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


def nchw_index(idx, shape) -> np.ndarray:
    """Flat NHWC feature indices of one (H, W, C) image as flat NCHW indices."""
    h, w, c = shape
    pixel, channel = np.divmod(np.asarray(idx), c)
    return channel * h * w + pixel


def test_torch_and_jax_networks_agree():
    for c in (3, 1):
        r = reference(c)
        with torch.no_grad():
            expected = r.net(torch.from_numpy(nchw(r.x))).numpy()
        np.testing.assert_allclose(r.model(jnp.asarray(r.x)), expected, rtol=0, atol=1e-13)
        assert 3000 < sum(p.numel() for p in r.net.parameters()) < 5000


def test_torch_and_jax_gradients_agree():
    r = reference(3)
    with float64_torch():
        g = torch_gradient(r.net, nchw(r.x), r.y)[:, 0]
    np.testing.assert_allclose(r.a, g, rtol=0, atol=1e-13)


def test_fresh_weights_go_into_torch():
    r = reference(3)
    net = TorchTiny(3).double().eval()
    weights = to_torch(r.params, r.net)
    for name, m in net.named_modules():
        if name in weights:
            m.fresh = weights[name]
            m.reset_parameters()
    x = torch.from_numpy(nchw(r.x))
    with torch.no_grad():
        np.testing.assert_array_equal(net(x).numpy(), r.net(x).numpy())
