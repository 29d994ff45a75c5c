"""torchvision models with random weights: the reference for tests, figures and benchmarks.

torchvision's wheel here is a CUDA build whose C extension does not load;
defining the `nms` and `qnms` op schemas first lets the models import.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.cache
def torchvision():
    try:
        import torchvision as tv
    except (RuntimeError, ImportError):
        lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR001
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define(
            "qnms(Tensor dets, Tensor scores, float iou_threshold, Tensor outscale) -> Tensor"
        )
        torchvision._lib = lib  # keep the definitions alive
        import torchvision as tv
    return tv


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (defaults are identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))


def no_inplace(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return model


def torch_model(arch: str, num_classes: int = 10, seed: int = 0, dtype=torch.float64):
    """A torchvision model with random weights, BN statistics randomised, eval mode."""
    torch.manual_seed(seed)
    m = getattr(torchvision().models, arch)(weights=None, num_classes=num_classes)
    randomize_bn(m, seed)
    return no_inplace(m).to(dtype).eval()


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)
