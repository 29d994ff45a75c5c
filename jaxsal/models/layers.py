"""Layer modules shared by every jaxsal model.

Each layer is a small Linen module with the parameter names and layout that the
torchvision converter and the LRP rules expect. The arithmetic lives in pure
functions (`conv2d`, `linear`, ...) so that LRP rules can re-run a layer with
modified weights without going through Flax.

Layouts: activations NHWC, conv kernels HWIO (in-channels per group), dense
kernels (in, out). BatchNorm runs in inference mode only (running statistics),
which is what every method in jaxsal needs.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_EPS = 1e-5

kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector shaped to broadcast over an NHWC (or N, C) array."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


# Which convolution `conv2d` runs:
#   "xla"     lax.conv_general_dilated and XLA's own derivatives;
#   "patches" the same forward, derivatives by `patch_conv` (kernel gradient
#             as one matmul per kernel tap);
#   "matmul"  `matmul_conv`: 1x1 convolutions as one matmul, small k x k ones
#             as one matmul over the stacked kernel taps (im2col), the rest
#             by `patch_conv`; every derivative is then a matmul;
#   "auto"    (the default) "matmul" when the default JAX backend is the CPU,
#             "xla" elsewhere (cuDNN is fast on its own).
# Read when a function is traced; `use_conv_backend` clears the jit caches.
CONV_BACKENDS = ("auto", "xla", "patches", "matmul")
_CONV_BACKEND = os.environ.get("JAXSAL_CONV", "auto")
if _CONV_BACKEND not in CONV_BACKENDS:
    raise ValueError(
        f'JAXSAL_CONV="{_CONV_BACKEND}" is not a conv backend; unset it or choose one of '
        f"{CONV_BACKENDS}"
    )
# `matmul_conv` stacks the kernel taps of a convolution (an im2col matrix)
# when that matrix holds at most IM2COL_LIMIT elements per image and the
# input has at least IM2COL_MIN_CHANNELS channels or is an image (at most
# IM2COL_IMAGE_CHANNELS channels: the stems, whose input gradient XLA would
# compute as a transposed convolution with 3 output channels). The others
# (VGG's first blocks at 224 px; the small CNN's 16- and 32-channel layers,
# where XLA's convolution beats a thin matmul) go to `patch_conv`.
IM2COL_LIMIT = 4_000_000
IM2COL_MIN_CHANNELS = 64
IM2COL_IMAGE_CHANNELS = 3


def conv_backend() -> str:
    """The convolution backend `conv2d` uses now: "xla", "patches" or "matmul".

    "auto" (the default) is resolved here: "matmul" on the CPU, "xla" on
    accelerators.
    """
    if _CONV_BACKEND == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return _CONV_BACKEND


@contextlib.contextmanager
def use_conv_backend(name: str):
    """Runs `conv2d` with another backend inside the block.

    On XLA:CPU the native convolution is slow on small feature maps and
    1x1 kernels, and its kernel gradient is a convolution whose window is the
    whole feature map (several times the forward's cost); "matmul" (the
    CPU default) writes convolutions as matmuls so that every derivative order
    is a matmul too (see docs/benchmark.md for the measured speed-ups).
    "patches" keeps XLA's forward and only replaces the kernel gradient;
    "xla" is XLA's own path (the accelerator default). Values agree to
    rounding (float64 derivatives to 1e-12 in the tests). Jit caches are
    cleared on entry and exit, so functions traced under the other backend
    are traced again.
    """
    global _CONV_BACKEND
    if name not in CONV_BACKENDS:
        raise ValueError(f'unknown conv backend "{name}"; choose one of {CONV_BACKENDS}')
    old, _CONV_BACKEND = _CONV_BACKEND, name
    jax.clear_caches()
    try:
        yield
    finally:
        _CONV_BACKEND = old
        jax.clear_caches()


def conv2d(x, kernel, bias=None, *, stride=1, padding=0, groups=1):
    """2-D convolution in NHWC / HWIO with symmetric zero padding (torch semantics)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    pads = ((ph, ph), (pw, pw))
    backend = conv_backend() if groups == 1 else "xla"
    if backend == "matmul":
        y = matmul_conv(x, kernel, (sh, sw), pads)
    elif backend == "patches":
        y = patch_conv(x, kernel, (sh, sw), pads, (1, 1))
    else:
        y = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(sh, sw),
            padding=pads,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
        )
    if bias is not None:
        y = y + channels_last(bias, y.ndim)
    return y


def matmul_conv(x, kernel, strides, padding, im2col_limit: int | None = None):
    """NHWC / HWIO convolution (no groups, no dilation) written as matmuls.

    Same value as `lax.conv_general_dilated(x, kernel, strides, padding)`.
    The input is padded and each kernel tap (i, j) takes its strided window
    of it; the windows are stacked along channels into an im2col matrix of
    shape (N*oh*ow, kh*kw*cin) and multiplied by the kernel reshaped to
    (kh*kw*cin, cout). A 1x1 kernel needs no stacking. JAX differentiates
    this directly: the kernel gradient is one matmul, the input gradient one
    matmul and a sum of padded windows, at every derivative order. When the
    matrix would exceed `im2col_limit` elements per image (default
    `IM2COL_LIMIT`), or the input has between `IM2COL_IMAGE_CHANNELS` and
    `IM2COL_MIN_CHANNELS` channels (both excluded), `patch_conv` is used
    instead.
    """
    kh, kw, cin, cout = kernel.shape
    (lo_h, hi_h), (lo_w, hi_w) = padding
    n, h, w = x.shape[:3]
    oh = (h + lo_h + hi_h - kh) // strides[0] + 1
    ow = (w + lo_w + hi_w - kw) // strides[1] + 1
    limit = IM2COL_LIMIT if im2col_limit is None else im2col_limit
    thin = IM2COL_IMAGE_CHANNELS < cin < IM2COL_MIN_CHANNELS
    if kh * kw > 1 and (oh * ow * kh * kw * cin > limit or thin):
        return patch_conv(x, kernel, strides, padding, (1, 1))
    zero = jnp.zeros((), x.dtype)
    xp = lax.pad(x, zero, ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))
    taps = [
        lax.slice(
            xp,
            (0, i, j, 0),
            (n, i + (oh - 1) * strides[0] + 1, j + (ow - 1) * strides[1] + 1, cin),
            (1, strides[0], strides[1], 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    cols = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    y = cols.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return y.reshape(n, oh, ow, cout)


def _dilate(n: int, d: int) -> int:
    return 0 if n == 0 else 1 + d * (n - 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def patch_conv(x, kernel, strides, padding, lhs_dilation):
    """NHWC / HWIO convolution whose derivatives are matmuls over patches.

    Same value as `lax.conv_general_dilated(x, kernel, strides, padding,
    lhs_dilation)`. The kernel gradient is `x_ij^T @ g` for each kernel tap
    (i, j), `x_ij` the input window it sees (a strided slice; one matmul each);
    the input gradient is the transposed convolution written as another
    `patch_conv` (flipped kernel, in/out swapped, strides and input dilation
    exchanged), so second and higher derivatives use the same rules.
    """
    return _raw_conv(x, kernel, strides, padding, lhs_dilation)


def _raw_conv(x, kernel, strides, padding, lhs_dilation):
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _patch_conv_fwd(x, kernel, strides, padding, lhs_dilation):
    return _raw_conv(x, kernel, strides, padding, lhs_dilation), (x, kernel)


def _patch_conv_bwd(strides, padding, lhs_dilation, res, g):
    x, kernel = res
    kh, kw, cin, cout = kernel.shape
    # Input gradient: the transposed convolution (as jax's own transpose rule).
    pads = []
    for n_in, k, s, (lo, _), n_out, d in zip(
        x.shape[1:3], (kh, kw), strides, padding, g.shape[1:3], lhs_dilation
    ):
        before = k - lo - 1
        pads.append((before, _dilate(n_in, d) + k - 1 - _dilate(n_out, s) - before))
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    gx = patch_conv(g, flipped, lhs_dilation, tuple(pads), strides)
    # Kernel gradient: one (cin, N*oh*ow) @ (N*oh*ow, cout) matmul per kernel tap,
    # on strided slices of the padded (and dilated) input; no patches array.
    oh, ow = g.shape[1:3]
    (lo_h, hi_h), (lo_w, hi_w) = padding
    xp = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        (
            (0, 0, 0),
            (lo_h, hi_h, lhs_dilation[0] - 1),
            (lo_w, hi_w, lhs_dilation[1] - 1),
            (0, 0, 0),
        ),
    )
    g2 = g.reshape(-1, cout)
    taps = []
    for i in range(kh):
        for j in range(kw):
            limit = (xp.shape[0], i + (oh - 1) * strides[0] + 1, j + (ow - 1) * strides[1] + 1, cin)
            tap = lax.slice(xp, (0, i, j, 0), limit, (1, strides[0], strides[1], 1))
            taps.append(tap.reshape(-1, cin).T @ g2)
    gw = jnp.stack(taps).reshape(kh, kw, cin, cout)
    return gx, gw


patch_conv.defvjp(_patch_conv_fwd, _patch_conv_bwd)


def linear(x, kernel, bias=None):
    y = x @ kernel
    if bias is not None:
        y = y + channels_last(bias, y.ndim)
    return y


def batch_norm(x, scale, bias, mean, var, eps=BN_EPS):
    inv = scale * lax.rsqrt(var + eps)
    return x * channels_last(inv, x.ndim) + channels_last(bias - mean * inv, x.ndim)


def max_pool(x, kernel, stride, padding=0):
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    return lax.reduce_window(
        x,
        -jnp.inf,
        lax.max,
        (1, kh, kw, 1),
        (1, sh, sw, 1),
        ((0, 0), (ph, ph), (pw, pw), (0, 0)),
    )


def avg_pool(x, kernel, stride, padding=0):
    """Average pooling with zero padding counted in the divisor (torch default)."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    s = lax.reduce_window(
        x, 0.0, lax.add, (1, kh, kw, 1), (1, sh, sw, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0))
    )
    return s / (kh * kw)


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Averaging matrix of torch's adaptive average pooling along one axis."""
    m = np.zeros((size_out, size_in))
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x, output_size):
    oh, ow = _pair(output_size)
    ph = jnp.asarray(adaptive_pool_matrix(x.shape[1], oh), x.dtype)
    pw = jnp.asarray(adaptive_pool_matrix(x.shape[2], ow), x.dtype)
    return jnp.einsum("nhwc,oh,pw->nopc", x, ph, pw)


def softplus_relu(x, beta):
    """softplus(beta x) / beta: the beta-smoothed ReLU of Dombrowski et al."""
    return jax.nn.softplus(beta * x) / beta


class Conv(nn.Module):
    """torch.nn.Conv2d: `kernel` (kh, kw, in/groups, out) and optional `bias`."""

    features: int
    kernel_size: int | tuple[int, int] = 3
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size)
        if x.shape[-1] % self.groups:
            raise ValueError(f"{x.shape[-1]} input channels do not split into {self.groups} groups")
        kernel = self.param(
            "kernel", kaiming_fan_out, (kh, kw, x.shape[-1] // self.groups, self.features)
        )
        bias = (
            self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        )
        return conv2d(x, kernel, bias, stride=self.stride, padding=self.padding, groups=self.groups)


class Linear(nn.Module):
    """torch.nn.Linear: `kernel` (in, out) and `bias`."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", dense_init, (x.shape[-1], self.features))
        bias = (
            self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        )
        return linear(x, kernel, bias)


class BatchNorm(nn.Module):
    """torch.nn.BatchNorm2d in inference mode (running statistics in `batch_stats`)."""

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.variable("batch_stats", "mean", jnp.zeros, (c,)).value
        var = self.variable("batch_stats", "var", jnp.ones, (c,)).value
        return batch_norm(x, scale, bias, mean, var, self.eps)


def rectifier(kind: str, beta: float | None):
    """The pure activation of a ReLU ("relu") or ReLU6 ("relu6") module."""
    if kind == "relu":
        if beta is None:
            return jax.nn.relu
        return lambda x: softplus_relu(x, beta)
    if beta is None:
        return lambda x: jnp.clip(x, 0.0, 6.0)
    return lambda x: softplus_relu(x, beta) - softplus_relu(x - 6.0, beta)


class ReLU(nn.Module):
    """ReLU, or softplus(beta x) / beta when `beta` is set (beta-smoothing)."""

    beta: float | None = None
    kind = "relu"

    def __call__(self, x):
        return rectifier(self.kind, self.beta)(x)


class ReLU6(ReLU):
    """min(max(x, 0), 6); smoothed as softplus(beta x)/beta - softplus(beta (x-6))/beta."""

    kind = "relu6"


class MaxPool(nn.Module):
    kernel_size: int
    stride: int
    padding: int = 0

    def __call__(self, x):
        return max_pool(x, self.kernel_size, self.stride, self.padding)


class AvgPool(nn.Module):
    kernel_size: int
    stride: int
    padding: int = 0

    def __call__(self, x):
        return avg_pool(x, self.kernel_size, self.stride, self.padding)


class AdaptiveAvgPool(nn.Module):
    """torch.nn.AdaptiveAvgPool2d; output_size 1 is global average pooling."""

    output_size: int | tuple[int, int] = 1

    def __call__(self, x):
        if _pair(self.output_size) == (1, 1):
            return jnp.mean(x, axis=(1, 2), keepdims=True)
        return adaptive_avg_pool(x, self.output_size)


class Add(nn.Module):
    """Residual sum, a module of its own so that LRP rules and taps can reach it."""

    def __call__(self, a, b):
        return a + b


class Concat(nn.Module):
    """Channel concatenation (DenseNet), a module so that rules and taps reach it."""

    def __call__(self, xs: Sequence[jax.Array]):
        return jnp.concatenate(list(xs), axis=-1)


class Flatten(nn.Module):
    """torch.flatten(x, 1) on an NHWC tensor: flattens in (C, H, W) order."""

    def __call__(self, x):
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class Dropout(nn.Module):
    """Dropout in inference mode: the identity (kept so torchvision paths exist)."""

    def __call__(self, x):
        return x
