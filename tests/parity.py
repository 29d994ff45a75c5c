"""Helpers of the parity tests against torch libraries (Captum, pytorch-grad-cam).

- `randomize_biases`: non-zero biases, so that a missing bias term cannot go unseen;
- `converted`: a torchvision model with such biases, its float64 port and two images;
- `captum_float64`: Captum's hard-coded float32 casts kept in float64 during a call;
- `superpixels`: the feature mask of the feature-perturbing methods;
- `relative_error`: max |ours - ref| / max |ref|, refusing a vacuous (all-zero) reference.
"""

from __future__ import annotations

import contextlib

import jax.numpy as jnp
import numpy as np
import torch
from torch_ref import to_nhwc, torch_model

import weights_convert


def randomize_biases(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-zero conv and dense biases (torchvision initialises them to zero)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m.bias is not None:
            with torch.no_grad():
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))


def converted(arch: str, size: int, num_classes: int = 10):
    """(model, params, x): torchvision's `arch` with random biases, its float64 jaxsal port
    (`weights_convert.from_torchvision`) and x, two N(0, 1) images (2, size, size, 3), seed 0."""
    model = torch_model(arch, num_classes=num_classes)
    randomize_biases(model)
    params = weights_convert.from_torchvision(arch, model.state_dict(), dtype=jnp.float64)
    return model, params, np.random.default_rng(0).normal(size=(2, size, size, 3))


@contextlib.contextmanager
def captum_float64():
    """`.float()`, `torch.float`, `torch.FloatTensor` and the default dtype mean float64."""
    own = torch.Tensor.__dict__.get("float")  # None: inherited from torch._C.TensorBase
    default, float32, float_tensor = torch.get_default_dtype(), torch.float, torch.FloatTensor
    torch.Tensor.float = lambda self, *args, **kwargs: self.to(torch.float64)
    torch.float = torch.float64
    torch.FloatTensor = lambda data: torch.as_tensor(np.asarray(data), dtype=torch.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        if own is None:
            del torch.Tensor.float
        else:
            torch.Tensor.float = own
        torch.float, torch.FloatTensor = float32, float_tensor
        torch.set_default_dtype(default)


def superpixels(size: int) -> np.ndarray:
    """Nine uneven superpixels (a 3x3 grid cut at 11 and 22), ids 0..8, (H, W)."""
    band = np.minimum(np.arange(size) // 11, 2)
    return band[:, None] * 3 + band[None, :]


def relative_error(ours, ref) -> float:
    """max |ours - ref| / max |ref|, ours NHWC and ref a float64 NCHW tensor (or NHWC array).

    Every reference map must be non-zero somewhere: against zeros the comparison is vacuous.
    """
    ref = to_nhwc(ref) if isinstance(ref, torch.Tensor) else np.asarray(ref)
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ref.dtype == np.float64, f"the reference is {ref.dtype}, not float64"
    per_image = np.abs(ref).reshape(len(ref), -1).max(axis=1)
    assert np.all(per_image > 0), "a reference map is all zeros: the comparison would be vacuous"
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    print(f"relative error {err:.1e}")
    return err
