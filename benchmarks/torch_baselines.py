"""The PyTorch side of the throughput benchmark: Captum, Zennit, pytorch-grad-cam, fooling step.

Every function here returns a zero-argument callable that runs one
computation eagerly on fixed inputs (the benchmark times it), mirroring
one jaxsal call of `benchmarks.throughput`. The fooling step is a plain
PyTorch implementation of one fine-tuning step of Heo et al. (2019), written
the way the authors did it: the heatmap by `torch.autograd.grad(...,
create_graph=True)` and the loss's gradient by an ordinary `backward()`.

bfloat16: `autocast(fn, device)` runs any of them under `torch.autocast`
(bfloat16 convolutions and matrix products, float32 elsewhere), PyTorch's
counterpart of jaxsal's `params.with_precision("bfloat16")`. Nothing here
keeps hooks on the model between calls: each call registers what it needs
and removes it (pytorch-grad-cam's hooks included).
"""

from __future__ import annotations

import copy
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxsal.fooling import location_mask
from weights_convert.torch_reference import torchvision

ZENNIT_COMPOSITES = {
    "epsilon_plus": "EpsilonPlus",
    "epsilon_alpha2_beta1": "EpsilonAlpha2Beta1",
    "epsilon_plus_flat": "EpsilonPlusFlat",
    "epsilon_gamma_box": "EpsilonGammaBox",
}


def torch_layer(model, name: str):
    """The torch module at a torchvision path."""
    return dict(model.named_modules())[name]


def _idx(xt):
    return torch.arange(xt.shape[0], device=xt.device)


def floor(model, xt, ct):
    """One forward and backward pass of the class logit (the floor of every gradient method)."""
    xt = xt.clone().requires_grad_()

    def run():
        out = model(xt)
        return torch.autograd.grad(out[_idx(xt), ct].sum(), xt)[0]

    return run


def captum(model, method: str, xt, ct, *, layer=None, samples=50, chunk=None, stdev=0.5):
    """Captum's implementation of `method` (jaxsal's name) on the batch `xt`."""
    from captum import attr

    n = xt.shape[0]
    target = ct.tolist()
    per_pass = None if chunk is None else chunk * n
    if method == "simple_grad":
        s = attr.Saliency(model)
        return lambda: s.attribute(xt, target=target, abs=False)
    if method == "input_x_grad":
        s = attr.InputXGradient(model)
        return lambda: s.attribute(xt, target=target)
    if method == "smoothgrad":
        s = attr.NoiseTunnel(attr.Saliency(model))
        return lambda: s.attribute(
            xt, nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=chunk,
            stdevs=stdev, target=target, abs=False,
        )  # fmt: skip
    if method == "integrated_gradients":
        s = attr.IntegratedGradients(model)
        return lambda: s.attribute(
            xt, target=target, n_steps=samples, method="gausslegendre",
            internal_batch_size=per_pass,
        )  # fmt: skip
    if method == "guided_backprop":
        s = attr.GuidedBackprop(model)
        return lambda: s.attribute(xt, target=target)
    if method == "gradcam":
        s = attr.LayerGradCam(model, torch_layer(model, layer))
        return lambda: s.attribute(xt, target=target, relu_attributions=True)
    if method == "guided_gradcam":
        s = attr.GuidedGradCam(model, torch_layer(model, layer))
        return lambda: s.attribute(xt, target=target, interpolate_mode="nearest")
    raise ValueError(f"no Captum baseline for {method}")


def autocast(fn, device: str):
    """`fn` run under `torch.autocast(device, dtype=torch.bfloat16)`."""

    def run():
        with torch.autocast(device, dtype=torch.bfloat16):
            return fn()

    return run


def _float32_output(module, inputs, output):
    """Forward hook: the layer's output in float32 under autocast (numpy has no bfloat16)."""
    if output.dtype == torch.bfloat16:
        return output.float()
    return None


def grad_cam_library(model, xt, ct, *, layer, cls="GradCAM", batch_size=16):
    """pytorch-grad-cam's `cls` (GradCAM, GradCAMPlusPlus, ScoreCAM), upsampling and scaling.

    The CAM object and its hooks live for one call. Under autocast the layer's
    output is cast to float32 first: the library converts activations and
    gradients to NumPy, which has no bfloat16 (the rest of the model keeps
    autocast). Score-CAM scores `batch_size` channels per forward pass and
    its progress bar is silenced.
    """
    import pytorch_grad_cam
    from pytorch_grad_cam import score_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    score_cam.tqdm = types.SimpleNamespace(tqdm=lambda it, **kw: it)
    mod = torch_layer(model, layer)
    targets = [ClassifierOutputTarget(int(c)) for c in ct]

    def run():
        cast = mod.register_forward_hook(_float32_output)  # before the library's own hook
        try:
            with getattr(pytorch_grad_cam, cls)(model=model, target_layers=[mod]) as cam:
                cam.batch_size = batch_size
                return cam(input_tensor=xt, targets=targets)
        finally:
            cast.remove()

    return run


def _basic_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu1(self.bn1(self.conv1(x)))
    return self.relu2(self.bn2(self.conv2(out)) + identity)


def _bottleneck_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    return self.relu3(self.bn3(self.conv3(out)) + identity)


def deeplift_ready(model):
    """A copy of `model` with one ReLU module per call (Captum's DeepLift refuses reused ones).

    torchvision's ResNet blocks call one `nn.ReLU` two (BasicBlock) or three
    (Bottleneck) times; the copy's blocks get a ReLU per call, the same function.
    """
    resnet = torchvision().models.resnet
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, resnet.Bottleneck):
            m.relu1, m.relu2, m.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
            m.forward = types.MethodType(_bottleneck_forward, m)
        elif isinstance(m, resnet.BasicBlock):
            m.relu1, m.relu2 = nn.ReLU(), nn.ReLU()
            m.forward = types.MethodType(_basic_forward, m)
    return model


def captum_reference(model, method: str, xt, ct, *, baselines=None, samples=5, window=None,
                     chunk=None):  # fmt: skip
    """Captum's DeepLift (zero baseline), GradientShap and Occlusion on the batch `xt`.

    GradientShap: `samples` samples per image over `baselines` (NCHW), no noise.
    Occlusion: `window` = (size, stride) of square windows over all channels, zero
    baseline, `chunk` windows per forward pass.
    """
    from captum import attr

    target = ct.tolist()
    if method == "deeplift":
        s = attr.DeepLift(deeplift_ready(model))
        return lambda: s.attribute(xt, target=target)
    if method == "gradient_shap":
        s = attr.GradientShap(model)
        return lambda: s.attribute(xt, baselines=baselines, n_samples=samples, stdevs=0.0,
                                   target=target)  # fmt: skip
    if method == "occlusion":
        size, stride = window
        c = xt.shape[1]
        s = attr.Occlusion(model)
        return lambda: s.attribute(
            xt, sliding_window_shapes=(c, size, size), strides=(c, stride, stride),
            baselines=0.0, target=target, perturbations_per_eval=chunk or 1,
        )  # fmt: skip
    raise ValueError(f"no Captum baseline for {method}")


def zennit_composite(arch: str, composite: str):
    from zennit import composites
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    canonizers = []
    if arch.startswith("resnet"):
        canonizers = [ResNetCanonizer()]
    elif arch.startswith("vgg"):
        canonizers = [VGGCanonizer()]
    return getattr(composites, ZENNIT_COMPOSITES[composite])(canonizers=canonizers)


def _start(out, ct):
    g = torch.zeros_like(out)
    idx = torch.arange(out.shape[0], device=out.device)
    g[idx, ct] = out[idx, ct]
    return g


def zennit(model, arch, xt, ct, *, composite="epsilon_plus"):
    """An LRP map at the input with Zennit (the composite registered for each call)."""
    comp = zennit_composite(arch, composite)
    xt = xt.clone().requires_grad_()

    def run():
        with comp.context(model):
            out = model(xt)
            return torch.autograd.grad(out, xt, _start(out.detach(), ct))[0]

    return run


def fooling_step(model, arch, xt, yt, *, method, layer, lam=1.0, lr=1e-5, composite="epsilon_plus"):
    """One fooling fine-tuning step in plain PyTorch (forward, map, penalty, 2nd order, Adam).

    Loss: cross-entropy + lam * Location penalty of the map at `layer`;
    method "gradcam" (the paper's Grad-CAM map) or "lrp_t" (Zennit's
    composite; its gradient with `Composite.inactive`, as Zennit documents
    for second order).
    """
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    mod = torch_layer(model, layer)
    comp = zennit_composite(arch, composite) if method == "lrp_t" else None
    idx = torch.arange(xt.shape[0], device=xt.device)

    def penalty(h):
        hh, ww = h.shape[-2:]
        m = location_mask(hh, ww, border=None if hh >= 7 else 1)
        return ((torch.as_tensor(m, dtype=h.dtype, device=h.device) - h) ** 2).mean()

    def run():
        feats = {}
        handle = mod.register_forward_hook(lambda m, i, o: feats.setdefault("a", o))
        opt.zero_grad(set_to_none=True)
        try:
            if method == "gradcam":
                out = model(xt)
                a = feats["a"]
                (g,) = torch.autograd.grad(out[idx, yt].sum(), a, create_graph=True)
                cam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
                h = cam / (cam.amax((1, 2, 3), keepdim=True) + 1e-8)
                loss = F.cross_entropy(out, yt) + lam * penalty(h)
                loss.backward()
            else:
                with comp.context(model):
                    out = model(xt)
                    (r,) = torch.autograd.grad(out, feats["a"], _start(out, yt), create_graph=True)
                    h = torch.relu(r.sum(1, keepdim=True))
                    h = h - h.amin((1, 2, 3), keepdim=True)
                    h = h / (h.amax((1, 2, 3), keepdim=True) + 1e-8)
                    loss = F.cross_entropy(out, yt) + lam * penalty(h)
                    with comp.inactive():
                        loss.backward()
        finally:
            handle.remove()
        opt.step()
        return loss.detach()

    return run


def labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).integers(0, num_classes, n)
