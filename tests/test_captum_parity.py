"""Parity of jaxsal's gradient interpreters with Captum 0.9 (and pytorch-grad-cam), float64.

Reference: torchvision VGG16 and ResNet50 with random weights and randomised
BatchNorm statistics (tests/torch_ref.py), converted by
`weights_convert.from_torchvision`. Every jaxsal map must match Captum's to a
relative error `max|ours - ref| / max|ref| < 1e-8`. SmoothGrad and VarGrad
get jaxsal's own noise: Captum's `torch.normal` draw is replaced by
`stdev * jax.random.normal(key, (samples,) + x.shape)`, laid out as Captum
lays its noise out (image-major, `repeat_interleave`), so both libraries
average the gradients at the same noisy points.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from parity import captum_float64, converted, relative_error
from torch_ref import to_nchw, torchvision

import jaxsal
from jaxsal.forward import resolve_layer
from jaxsal.postprocess import upsample

# Captum announces the hooks it puts on every ReLU for guided backprop and deconvolution.
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")

TOL = 1e-8
SIZE = 72  # VGG16's target layer is 4x4 here, so the upsampling ratio (18) is not a power of 2
CLASSES = np.array([3, 7])
# The "target" alias of each jaxsal model, and the torchvision module it names.
TARGETS = {
    "vgg16": ("features.27", lambda m: m.features[27]),
    "resnet50": ("layer4.1", lambda m: m.layer4[1]),
}


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    model: torch.nn.Module
    params: jaxsal.ModelParams
    layer: torch.nn.Module
    x: np.ndarray  # NHWC float64

    def xt(self) -> torch.Tensor:
        """A fresh NCHW copy of the input that records gradients."""
        return to_nchw(self.x).requires_grad_()


@pytest.fixture(scope="module", params=sorted(TARGETS))
def case(request) -> Case:
    arch = request.param
    model, params, x = converted(arch, SIZE)
    name, layer = TARGETS[arch]
    assert resolve_layer(params, "target") == name
    return Case(arch, model, params, layer(model), x)


@pytest.mark.parametrize(
    ("captum_cls", "kwargs", "method"),
    [
        (Saliency, {"abs": False}, jaxsal.simple_grad),
        (InputXGradient, {}, jaxsal.input_x_grad),
        (GuidedBackprop, {}, jaxsal.guided_backprop),
        (Deconvolution, {}, jaxsal.deconvnet),
    ],
    ids=["saliency", "input_x_gradient", "guided_backprop", "deconvnet"],
)
def test_gradient_maps(case, captum_cls, kwargs, method):
    ref = captum_cls(case.model).attribute(case.xt(), target=torch.from_numpy(CLASSES), **kwargs)
    assert relative_error(method(case.params, case.x, CLASSES), ref) < TOL


@pytest.mark.parametrize(
    ("nt_type", "method", "samples"),
    [("smoothgrad", jaxsal.smoothgrad, 3), ("vargrad", jaxsal.vargrad, 3)],
    ids=["smoothgrad", "vargrad"],
)
def test_noise_tunnel(case, monkeypatch, nt_type, method, samples):
    stdev, key = 0.3, jax.random.key(42)
    # jaxsal's documented noise: stdev * normal(key, (samples, N, H, W, C)).
    noise = stdev * np.asarray(jax.random.normal(key, (samples,) + case.x.shape, jnp.float64))
    n = len(case.x)
    # Captum repeats each image `samples` times in a row (repeat_interleave): row i*S + s.
    captum_noise = torch.from_numpy(
        np.ascontiguousarray(
            noise.transpose(1, 0, 4, 2, 3).reshape((n * samples,) + (3, SIZE, SIZE))
        )
    )
    draws = []

    def normal(mean, std):
        assert mean == 0 and tuple(std.shape) == tuple(captum_noise.shape)
        assert torch.all(std == stdev)
        draws.append(1)
        return captum_noise.clone()

    monkeypatch.setattr(torch, "normal", normal)
    ref = NoiseTunnel(Saliency(case.model)).attribute(
        case.xt(),
        nt_type=nt_type,
        nt_samples=samples,
        stdevs=stdev,
        target=torch.from_numpy(CLASSES),
        abs=False,
    )
    assert draws == [1]
    ours = method(case.params, case.x, CLASSES, key=key, samples=samples, stdev=stdev)
    assert relative_error(ours, ref) < TOL


@pytest.mark.parametrize("quadrature", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients(case, quadrature):
    steps = 4
    # Captum casts the quadrature weights to float32 (`torch.tensor(step_sizes).float()`) and
    # draws Riemann points with `torch.linspace` in the default dtype: ~1e-8 relative alone.
    with captum_float64():
        ref = IntegratedGradients(case.model).attribute(
            case.xt(), target=torch.from_numpy(CLASSES), n_steps=steps, method=quadrature
        )
    ours = jaxsal.integrated_gradients(case.params, case.x, CLASSES, steps=steps, method=quadrature)
    if quadrature == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n (1/(2n) at the ends) and sum to (n-1)/n;
        # jaxsal's are the composite trapezoid rule's 1/(n-1) (ends halved), which sum
        # to 1 as completeness needs. Same points, so the maps differ by that factor.
        ours = ours * (steps - 1) / steps
    assert relative_error(ours, ref) < TOL


@pytest.fixture(scope="module")
def cam(case) -> np.ndarray:
    """jaxsal's Grad-CAM at the target layer, through an explicit jit.

    ResNet50's weights are closed over (jit embeds them as constants); VGG16's
    1.1 GB of float64 weights are passed as an argument instead, since as
    constants they add ~10 s of compilation.
    """
    x, c = jnp.asarray(case.x), jnp.asarray(CLASSES)
    if case.arch == "resnet50":
        return np.asarray(jax.jit(lambda x, c: jaxsal.gradcam(case.params, x, c))(x, c))
    return np.asarray(jax.jit(lambda p, x, c: jaxsal.gradcam(p, x, c))(case.params, x, c))


def test_layer_gradcam(case, cam):
    ref = LayerGradCam(case.model, case.layer).attribute(
        case.xt(), target=torch.from_numpy(CLASSES), relu_attributions=True
    )
    assert relative_error(cam, ref) < TOL


def test_guided_gradcam(case):
    ref = GuidedGradCam(case.model, case.layer).attribute(
        case.xt(), target=torch.from_numpy(CLASSES)
    )
    ours = jaxsal.guided_gradcam(case.params, case.x, CLASSES, layer="target")
    assert relative_error(ours, ref) < TOL


def test_pytorch_grad_cam(case, cam):
    """pytorch-grad-cam's map before its post-processing (min-max scaling, cv2 resize)."""
    torchvision()  # the nms workaround, before pytorch_grad_cam imports torchvision
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class RawGradCAM(GradCAM):
        def get_cam_image(self, *args, **kwargs):
            cam = super().get_cam_image(*args, **kwargs)
            self.raw = np.maximum(cam, 0)  # the library rectifies right after this call
            return cam

    explainer = RawGradCAM(case.model, target_layers=[case.layer])
    try:
        explainer(to_nchw(case.x), targets=[ClassifierOutputTarget(int(k)) for k in CLASSES])
    finally:
        explainer.activations_and_grads.release()
    ref = torch.from_numpy(explainer.raw[:, None])
    assert relative_error(cam, ref) < TOL


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
@pytest.mark.parametrize(("size_in", "size_out"), [((4, 4), (72, 72)), ((3, 5), (7, 96))])
def test_upsample_matches_torch_interpolate(method, size_in, size_out):
    """`upsample` against `F.interpolate` (Captum's `LayerAttribution.interpolate`)."""
    h = np.random.default_rng(1).normal(size=(2, *size_in, 1))
    ref = torch.nn.functional.interpolate(to_nchw(h), size=size_out, mode=method)
    assert relative_error(upsample(jnp.asarray(h), size_out, method=method), ref) < TOL
