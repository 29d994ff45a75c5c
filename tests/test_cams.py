"""The CAM family against pytorch-grad-cam 1.5.7, in float64, and its own properties.

Reference: torchvision VGG16 and ResNet50 with random weights, randomised
BatchNorm statistics and non-zero biases (tests/torch_ref.py), converted by
`weights_convert.from_torchvision` to float64. What is compared: the map
pytorch-grad-cam computes at the layer (`get_cam_image`, then its
`max(cam, 0)`), before its float32 min-max scaling and cv2 resize, against
jaxsal's map through an explicit `jax.jit`; relative error
`max|ours - ref| / max|ref| < 1e-8`. `test_scaled_image` checks the
post-processing as well (`scale_cam` against the library's float32 output).

pytorch-grad-cam rounds some intermediates to float32; the tests run those
parts in float64 instead (`float64_grad_cam`): Ablation-CAM's scores
(`np.float32`), Score-CAM's scores (`torch.Tensor(list)`, the default dtype)
and Eigen-CAM's projection (`np.float32`). Eigen-CAM's sign is LAPACK's in
pytorch-grad-cam and a fixed convention in jaxsal (see `eigencam`), so its
projection is compared up to a sign per image.

Score-CAM and Ablation-CAM need one forward pass per channel; they run at
64-channel layers (VGG16 `features.3`, ResNet50's stem `relu`), which are
rectified, where pytorch-grad-cam's ablation zeroes a channel as jaxsal does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity import converted
from test_interpreters import fd_errors, images, location_penalty, random_params
from torch_ref import to_nchw, torchvision

import jaxsal
from jaxsal.interpreters.cams import (
    eigencam,
    gradcam_plusplus,
    hirescam,
    layercam,
    scale_cam,
    xgradcam,
)
from jaxsal.interpreters.cams_perturbation import ablationcam, scorecam

TOL = 1e-8
SIZE = 64
CLASSES = np.array([3, 7])
# The gradient CAMs' and Eigen-CAM's layer of each model (jaxsal name, torchvision module).
LAYERS = {
    "vgg16": ("target", lambda m: m.features[27]),  # 4x4x512 at 64 px
    "resnet50": ("layer3", lambda m: m.layer3),  # 4x4x1024 (the target, layer4.1, is 2x2)
}


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    model: torch.nn.Module
    params: jaxsal.ModelParams
    x: np.ndarray  # NHWC float64


@functools.cache
def build(arch: str) -> Case:
    """The torchvision model and its float64 port, with XLA's convolution.

    XLA's convolution (rather than the CPU default, matmuls) compiles these
    large programs about twice as fast; the arithmetic is the same to ~1e-15.
    """
    model, params, x = converted(arch, SIZE)
    return Case(arch, model, params.with_conv("xla"), x)


@pytest.fixture(scope="module", params=sorted(LAYERS))
def case(request) -> Case:
    return build(request.param)


class Float64Numpy:
    """numpy, except that `np.float32(...)` keeps float64 (for pytorch-grad-cam's modules)."""

    float32 = staticmethod(np.float64)

    def __getattr__(self, name):
        return getattr(np, name)


@contextlib.contextmanager
def float64_grad_cam(monkeypatch):
    """pytorch-grad-cam's float32 roundings replaced by float64 (see the module docstring)."""
    import pytorch_grad_cam.ablation_cam as ablation
    import pytorch_grad_cam.utils.svd_on_activations as svd

    monkeypatch.setattr(ablation, "np", Float64Numpy())
    monkeypatch.setattr(svd, "np", Float64Numpy())
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # ScoreCAM's torch.Tensor(scores)
    try:
        yield
    finally:
        torch.set_default_dtype(default)


def reference(cls_name: str, model, layer, x, classes, *, full=False, **kwargs):
    """pytorch-grad-cam's map at the layer before rectification (N, h, w), or its output."""
    torchvision()  # the nms workaround, before pytorch_grad_cam imports torchvision
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    class Raw(getattr(pytorch_grad_cam, cls_name)):
        def get_cam_image(self, *args, **kw):
            self.raw = super().get_cam_image(*args, **kw)
            return self.raw

    explainer = Raw(model, target_layers=[layer], **kwargs)
    try:
        out = explainer(to_nchw(x), targets=[ClassifierOutputTarget(int(k)) for k in classes])
    finally:
        explainer.activations_and_grads.release()
    return out if full else np.asarray(explainer.raw, np.float64)


def relative_error(ours, ref) -> float:
    """max |ours - ref| / max |ref| for maps (N, h, w, 1) against (N, h, w), all non-zero."""
    ours = np.asarray(ours)[..., 0]
    assert ours.shape == ref.shape
    peaks = np.abs(ref).reshape(len(ref), -1).max(axis=1)
    assert np.all(peaks > 0), "a reference map is zero: the comparison would be vacuous"
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    print(f"relative error {err:.1e}")
    return err


def jitted(method, params, x, c, **hyper):
    """The method through an explicit jit; the weights are an argument (not constants)."""
    f = jax.jit(lambda p, x, c: method(p, x, c, **hyper))
    return f(params, jnp.asarray(x), jnp.asarray(c))


GRADIENT_CAMS = {
    "GradCAMPlusPlus": gradcam_plusplus,
    "XGradCAM": xgradcam,
    "HiResCAM": hirescam,
    "LayerCAM": layercam,
}


@pytest.fixture(scope="module")
def gradient_maps(case) -> dict[str, np.ndarray]:
    """The four gradient CAMs, signed (relu=False), from one jitted program.

    One program rather than four: XLA merges the four identical forward and
    backward passes, and compiling once saves most of the test's time.
    """
    layer = LAYERS[case.arch][0]

    def all_maps(p, x, c):
        return {k: m(p, x, c, layer=layer, relu=False) for k, m in GRADIENT_CAMS.items()}

    out = jax.jit(all_maps)(case.params, jnp.asarray(case.x), jnp.asarray(CLASSES))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("peer", sorted(GRADIENT_CAMS))
def test_gradient_cams(case, gradient_maps, peer):
    """The signed maps (pytorch-grad-cam rectifies them next, as jaxsal does by default)."""
    ref = reference(peer, case.model, LAYERS[case.arch][1](case.model), case.x, CLASSES)
    assert relative_error(gradient_maps[peer], ref) < TOL


def test_scaled_image(case, gradient_maps):
    """`scale_cam` of jaxsal's map against pytorch-grad-cam's own float32 output image."""
    module = LAYERS[case.arch][1](case.model)
    ref = reference("GradCAMPlusPlus", case.model, module, case.x, CLASSES, full=True)
    cam = jax.nn.relu(gradient_maps["GradCAMPlusPlus"])
    ours = np.asarray(scale_cam(cam, case.x.shape[1:3]))[..., 0]
    assert ours.shape == ref.shape and ref.max() > 0.99
    assert np.abs(ours - ref).max() < 1e-6  # float32 rounding (measured 1.1e-7)


def test_eigencam(case, monkeypatch):
    layer, module = LAYERS[case.arch]
    with float64_grad_cam(monkeypatch):
        ref = reference("EigenCAM", case.model, module(case.model), case.x, CLASSES)
    ours = np.asarray(jitted(eigencam, case.params, case.x, CLASSES, layer=layer, relu=False))
    signs = np.sign(np.sum(ours[..., 0] * ref, axis=(1, 2)))  # LAPACK's sign, per image
    print("pytorch-grad-cam's sign relative to jaxsal's:", signs)
    assert relative_error(ours * signs[:, None, None, None], ref) < TOL


# Score-CAM and Ablation-CAM run one forward pass per channel and image, in
# both libraries: on ResNet50 at 32 px with the 64-channel stem ReLU (rectified,
# so pytorch-grad-cam ablates by zeroing, as jaxsal). VGG16 is left out: its
# classifier alone costs 0.24 GFLOP a pass at any input size, and 2 x 64
# passes per method and library would take most of this file's time budget.
PERTURBATION = ("relu", lambda m: m.relu)


@pytest.mark.parametrize(
    ("peer", "method", "chunk"),
    [("ScoreCAM", scorecam, 24), ("AblationCAM", ablationcam, 32)],
    ids=["scorecam", "ablationcam"],
)
def test_perturbation_cams(monkeypatch, peer, method, chunk):
    case = build("resnet50")
    x = case.x[:, ::2, ::2]  # 32 px
    layer, module = PERTURBATION
    assert float(jaxsal.features(case.params, x, [layer])[layer].min()) == 0.0
    with float64_grad_cam(monkeypatch):
        ref = reference(peer, case.model, module(case.model), x, CLASSES)
    ours = jitted(method, case.params, x, CLASSES, layer=layer, chunk=chunk, relu=False)
    assert relative_error(ours, ref) < TOL


# ------------------------------------------------------------ properties on a small CNN


@pytest.fixture(scope="module")
def small():
    return random_params("small_cnn"), images(2, 48), np.array([1, 4])


ALL = [gradcam_plusplus, xgradcam, hirescam, layercam, scorecam, ablationcam, eigencam]


GRADIENT_FREE = [scorecam, ablationcam]


@pytest.mark.parametrize("method", [m for m in ALL if m not in GRADIENT_FREE],
                         ids=lambda m: m.__name__)  # fmt: skip
def test_jit_and_rectification(small, method):
    """Through a user's jit, the default map is the eager signed map, rectified."""
    params, x, c = small
    signed = method(params, x, c, relu=False)
    assert signed.shape == (2, 6, 6, 1)
    assert float(jnp.max(signed)) > 0
    expected = np.maximum(signed, 0)
    np.testing.assert_allclose(jitted(method, params, x, c), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", GRADIENT_FREE, ids=lambda m: m.__name__)
def test_chunked_jitted_equals_unchunked(small, method):
    """chunk=5 (not a divisor of the 64 channels: the last chunk is padded) under a user's
    jit equals all 64 channels in one pass, eager; and the default map is it rectified."""
    params, x, c = small
    whole = method(params, x, c, chunk=64, relu=False)
    assert whole.shape == (2, 6, 6, 1) and float(jnp.max(whole)) > 0
    chunked = jitted(method, params, x, c, chunk=5)
    np.testing.assert_allclose(chunked, np.maximum(whole, 0), rtol=1e-12, atol=1e-14)


# Score-CAM's map is a softmax over the scores of masked images, which makes
# its central differences sensitive to the step: at the target layer, errors at
# h = 1e-5 / 1e-7 / 1e-8 measured 3e-4 / 2e-8 / 6e-7 (curvature, then rounding),
# and at the first ReLU no step gave all three directions below 1e-7. Ablation-CAM
# runs at the first ReLU (16 channels, 48x48: a quarter of the target's passes).
SECOND_ORDER = [
    (gradcam_plusplus, 1e-6, {}),
    (layercam, 1e-6, {}),
    (eigencam, 1e-6, {}),
    (ablationcam, 1e-6, {"layer": "features.1"}),
    (scorecam, 1e-7, {}),
]


@pytest.mark.parametrize(
    ("method", "h", "hyper"), SECOND_ORDER, ids=[m.__name__ for m, _, _ in SECOND_ORDER]
)
def test_second_order(method, h, hyper):
    """d/dparams of a Location penalty on the map matches central differences (beta = 10).

    As for Grad-CAM in tests/test_interpreters.py: the beta-smoothed SmallCNN
    at 48 px (the target layer is 6x6), three random directions.
    """
    params = random_params("small_cnn", beta=10.0)
    x = images(1, 48)
    assert int(jnp.sum(method(params, x, 1, **hyper) > 0)) >= 3  # not a one-hot map
    errors = fd_errors(location_penalty(method, x, 1, **hyper), params, h=h)
    assert max(errors) < 1e-6, errors


@pytest.mark.parametrize("method", [scorecam, ablationcam], ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("chunk", "error", "match"),
    [
        (0, ValueError, r"chunk must be at least 1, got 0; e\.g\. chunk=16"),
        (2.5, TypeError, r"chunk must be a Python int, got float 2\.5; e\.g\. chunk=16"),
        (None, TypeError, r"chunk must be a Python int, got NoneType"),
    ],
)
def test_bad_chunk(small, method, chunk, error, match):
    params, x, c = small
    with pytest.raises(error, match=f"{method.__name__}: {match}"):
        method(params, x, c, chunk=chunk)


@pytest.mark.parametrize("method", ALL, ids=lambda m: m.__name__)
def test_bad_layer(small, method):
    params, x, c = small
    with pytest.raises(ValueError, match=r'layer "classifier" gives shape \(2, 10\)'):
        method(params, x, c, layer="classifier")
    with pytest.raises(jaxsal.LayerNotFoundError, match="layer5"):
        method(params, x, c, layer="layer5")
