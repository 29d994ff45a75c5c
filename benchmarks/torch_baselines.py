"""The PyTorch side of the throughput benchmark: Captum, Zennit, pytorch-grad-cam, fooling step.

Every function here returns a zero-argument callable that runs one
computation eagerly on fixed inputs (the benchmark times it), mirroring
one jaxsal call of `benchmarks.throughput`. The fooling step is a plain
PyTorch implementation of one fine-tuning step of Heo et al. (2019), written
the way the authors did it: the heatmap by `torch.autograd.grad(...,
create_graph=True)` and the loss's gradient by an ordinary `backward()`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jaxsal.fooling import location_mask

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
    return torch.arange(xt.shape[0])


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


def grad_cam_library(model, xt, ct, *, layer):
    """pytorch-grad-cam's GradCAM (includes its upsampling to the input and scaling)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[torch_layer(model, layer)])
    targets = [ClassifierOutputTarget(int(c)) for c in ct]
    return lambda: cam(input_tensor=xt, targets=targets)


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
    idx = torch.arange(out.shape[0])
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
    idx = torch.arange(xt.shape[0])

    def penalty(h):
        hh, ww = h.shape[-2:]
        m = location_mask(hh, ww, border=None if hh >= 7 else 1)
        return ((torch.as_tensor(m, dtype=h.dtype) - h) ** 2).mean()

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
