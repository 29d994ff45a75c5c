"""The model ports inside: taps, aliases, beta-smoothing and layer names, against torchvision.

Reference: torchvision models with random weights and randomised BatchNorm
statistics in float64 (tests/torch_ref.py), converted by
`weights_convert.from_torchvision`.
- Taps: `jaxsal.features(params, x, [path])` equals the output of the torch
  module at `path` (a forward hook); the DenseNet target (the input of the
  last dense layer) equals what torch's `denselayer16` receives (a forward
  pre-hook: a list of tensors, concatenated).
- Beta-smoothing: `params.with_beta(b)` equals the torch model with every
  ReLU replaced by `nn.Softplus(beta=b)` (Dombrowski et al., 2019).
- Layer names: every torch module that holds parameters is tappable, in the
  order torch runs them; unknown names raise `jaxsal.LayerNotFoundError`
  with close matches and the top-level layers.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn
from torch_ref import to_nchw, to_nhwc, torch_model, torchvision

import jaxsal
from jaxsal.forward import resolve_layer
from weights_convert import from_torchvision

SIZE = 72
TOL = 1e-10
BETA = 3.0
# Softplus switches to the identity above threshold / beta; 500 keeps the exact formula
# (exp(-500) is nothing in float64) without overflowing exp.
THRESHOLD = 500.0

# jaxsal layer name -> torchvision module path whose output it must equal.
TAPS = {
    "resnet50": {
        "maxpool": "maxpool",
        "layer2": "layer2",
        "layer3.0.downsample": "layer3.0.downsample",
        "layer4.1": "layer4.1",
        "layer4.1.conv2": "layer4.1.conv2",
        "layer4.1.bn3": "layer4.1.bn3",
        "target": "layer4.1",
        "fc": "fc",
    },
    "vgg19": {
        "features.33": "features.33",
        "target": "features.33",
        "features.36": "features.36",
        "avgpool": "avgpool",
        "classifier.4": "classifier.4",
    },
    "densenet121": {
        "features.pool0": "features.pool0",
        "features.transition2": "features.transition2",
        "features.denseblock4": "features.denseblock4",
        "features.denseblock4.denselayer16": "features.denseblock4.denselayer16",
        "features.norm5": "features.norm5",
    },
    "mobilenet_v2": {
        "features.0": "features.0",
        "features.3": "features.3",  # a residual block: includes the sum
        "features.3.conv.1.0": "features.3.conv.1.0",
        "features.17": "features.17",
        "target": "features.17",
        "features.18": "features.18",
    },
}
# The fooling paper's target layers (Heo et al., 2019, appendix), by their torchvision paths.
PAPER_TARGETS = {
    "resnet50": "layer4.1",
    "vgg19": "features.33",
    "densenet121": "features.denseblock4.cat15",
    "mobilenet_v2": "features.17",
}

features = jax.jit(jaxsal.features, static_argnums=2)
logits = jax.jit(jaxsal.logits)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(2, SIZE, SIZE, 3))


@pytest.fixture(scope="module", params=sorted(TAPS))
def case(request):
    """(arch, float64 torchvision model, its float64 conversion)."""
    model = torch_model(request.param, num_classes=10)
    return (
        request.param,
        model,
        from_torchvision(request.param, model.state_dict(), dtype=jnp.float64),
    )


def nhwc(t: torch.Tensor) -> np.ndarray:
    return to_nhwc(t) if t.ndim == 4 else t.detach().numpy()


def compare(ours, ref: np.ndarray, what: str) -> float:
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, f"{what}: {ours.shape} != {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(ours - ref).max())
    print(f"{what}: max abs diff {err:.1e} (max |ref| {np.abs(ref).max():.2f})")
    assert np.abs(ref).max() > 0, f"{what}: the reference is all zeros"
    assert err <= TOL * scale, what
    return err


def test_taps_equal_torch_forward_hooks(case, images):
    arch, model, params = case
    captured: dict[str, torch.Tensor] = {}  # torch path (or "target") -> tensor
    hooks = []
    for path in set(TAPS[arch].values()):

        def hook(module, args, out, path=path):
            assert path not in captured, f"{path} runs twice"
            captured[path] = out.clone()  # DenseNet's forward applies relu in place to norm5

        hooks.append(model.get_submodule(path).register_forward_hook(hook))
    expected = dict(TAPS[arch])  # jaxsal name -> key into `captured`
    if arch == "densenet121":

        def pre_hook(module, args):
            (inputs,) = args  # the dense layer gets the list of all earlier feature maps
            captured["target"] = torch.cat(inputs, dim=1)

        last = model.features.denseblock4.denselayer16
        hooks.append(last.register_forward_pre_hook(pre_hook))
        expected["target"] = "target"
    try:
        with torch.no_grad():
            model(to_nchw(images))
    finally:
        for h in hooks:
            h.remove()

    acts = features(params, images, tuple(expected))
    assert set(acts) == set(expected)
    for name, key in expected.items():
        compare(acts[name], nhwc(captured[key]), f"{arch} {name}")
    if arch == "densenet121":
        assert acts["target"].shape[-1] == 992


def test_target_alias_is_the_papers_layer(case):
    arch, _, params = case
    assert resolve_layer(params, "target") == PAPER_TARGETS[arch]


class SmoothReLU6(nn.Module):
    """ReLU6 = relu(x) - relu(x - 6), each ReLU beta-smoothed."""

    def __init__(self, beta: float):
        super().__init__()
        self.softplus = nn.Softplus(beta=beta, threshold=THRESHOLD)

    def forward(self, x):
        return self.softplus(x) - self.softplus(x - 6.0)


@contextlib.contextmanager
def smoothed(model: nn.Module, beta: float):
    """Every nn.ReLU of `model` replaced by nn.Softplus(beta) (ReLU6 by SmoothReLU6), restored after."""
    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            parent, _, child = name.rpartition(".")
            parent = model.get_submodule(parent)
            new = (
                SmoothReLU6(beta)
                if isinstance(module, nn.ReLU6)
                else nn.Softplus(beta=beta, threshold=THRESHOLD)
            )
            setattr(parent, child, new)
            swapped.append((parent, child, module))
    assert swapped, "no ReLU to replace"
    try:
        yield model
    finally:
        for parent, child, module in swapped:
            setattr(parent, child, module)


def torch_logits(model: nn.Module, x: torch.Tensor, beta: float | None) -> np.ndarray:
    with torch.no_grad():
        if isinstance(model, torchvision().models.DenseNet) and beta is not None:
            # torchvision's DenseNet.forward applies a functional relu after `features`.
            act = nn.Softplus(beta=beta, threshold=THRESHOLD)
            out = torch.flatten(nn.functional.adaptive_avg_pool2d(act(model.features(x)), 1), 1)
            return model.classifier(out).numpy()
        return model(x).numpy()


def test_beta_smoothing_equals_torch_softplus(case, images):
    arch, model, params = case
    x = to_nchw(images)
    with smoothed(model, BETA):
        ref = torch_logits(model, x, BETA)
    plain = torch_logits(model, x, None)
    # The smoothing must change the logits, or the comparison proves nothing.
    assert np.abs(ref - plain).max() > 1e3 * TOL * max(1.0, np.abs(ref).max())
    compare(logits(params.with_beta(BETA), images), ref, f"{arch} beta={BETA} logits")


def test_layer_names_cover_torch_modules_in_order(case, images):
    arch, model, params = case
    names = jaxsal.layer_names(params)
    assert len(set(names)) == len(names)
    with_params = [n for n, m in model.named_modules() if list(m.parameters(recurse=False))]
    missing = sorted(set(with_params) - set(names))
    assert not missing, f"torch modules without a jaxsal layer: {missing}"

    order: list[str] = []
    hooks = [
        model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: order.append(n))
        for n in with_params
    ]
    try:
        with torch.no_grad():
            model(to_nchw(images[:1]))
    finally:
        for h in hooks:
            h.remove()
    assert order == [n for n in names if n in set(with_params)]


def test_unknown_layer_names_close_matches_and_top_level(case, images):
    arch, _, params = case
    top = {
        "resnet50": ["conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool", "fc"],
        "vgg19": ["features", "avgpool", "classifier"],
        "densenet121": ["features", "relu", "avgpool", "classifier"],
        "mobilenet_v2": ["features", "avgpool", "classifier"],
    }[arch]
    close = {
        "resnet50": ("layer4.1.conv4", "layer4.1.conv"),
        "vgg19": ("features.333", "features.33"),
        "densenet121": ("features.denseblock4.denselayer17", "features.denseblock4.denselayer1"),
        "mobilenet_v2": ("features.17.conv.9", "features.17.conv."),
    }[arch]
    with pytest.raises(jaxsal.LayerNotFoundError) as info:
        jax.eval_shape(lambda x: jaxsal.features(params, x, [close[0]]), images)
    msg = str(info.value)
    print(msg)
    assert f'"{close[0]}"' in msg
    assert close[1] in msg.split("Did you mean ")[1].split("?")[0]
    listed = msg.split("Top-level layers: ")[1].split(";")[0].split(", ")
    assert set(top) <= set(listed)
    assert "target" in msg and "layer_names" in msg
