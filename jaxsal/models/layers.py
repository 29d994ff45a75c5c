"""Layer modules shared by every jaxsal model.

Each layer is a small Linen module with the parameter names and layout that the
torchvision converter and the LRP rules expect. The arithmetic lives in pure
functions (`conv2d`, `linear`, ...) so that LRP rules can re-run a layer with
modified weights without going through Flax.

Layouts: activations NHWC, conv kernels HWIO (in-channels per group), dense
kernels (in, out). BatchNorm runs in inference mode only (running statistics),
which is what every method in jaxsal needs. Nothing here is special to
jaxsal's methods: rules, taps, beta-smoothing and the conv backend are applied
by the graph evaluator (`jaxsal.graph`) to any model's operations.
"""

from __future__ import annotations

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


def conv2d(x, kernel, bias=None, *, stride=1, padding=0, groups=1):
    """2-D convolution in NHWC / HWIO with symmetric zero padding (torch semantics).

    Traced as one `lax.conv_general_dilated`; the model's conv backend
    (`jaxsal.graph._conv`) decides how the graph evaluator runs it.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(sh, sw),
        padding=((ph, ph), (pw, pw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )
    if bias is not None:
        y = y + channels_last(bias, y.ndim)
    return y


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
    """torch.nn.BatchNorm2d (running statistics in `batch_stats`).

    Inference mode (running statistics) unless the `batch_stats` collection is
    mutable: then, as torch's training mode, the batch's own statistics
    normalise it and the running ones move by `momentum` towards them (torch's
    unbiased batch variance). Only training from scratch uses that
    (`ModelParams.train_apply`); every method explains in inference mode.
    """

    eps: float = BN_EPS
    momentum: float = 0.1

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = self.variable("batch_stats", "mean", jnp.zeros, (c,))
        var = self.variable("batch_stats", "var", jnp.ones, (c,))
        if not self.is_mutable_collection("batch_stats") or self.is_initializing():
            return batch_norm(x, scale, bias, mean.value, var.value, self.eps)
        axes = tuple(range(x.ndim - 1))
        m = x.mean(axes)
        v = ((x - channels_last(m, x.ndim)) ** 2).mean(axes)
        count = x.size // c
        mean.value = (1 - self.momentum) * mean.value + self.momentum * m
        var.value = (1 - self.momentum) * var.value + self.momentum * v * count / max(count - 1, 1)
        return batch_norm(x, scale, bias, m, v, self.eps)


def rectifier(kind: str, beta=None):
    """The activation of a ReLU ("relu") or ReLU6 ("relu6"), beta-smoothed when `beta` is set.

    Smoothed: softplus(beta x) / beta, and for ReLU6 softplus(beta x) / beta -
    softplus(beta (x - 6)) / beta.
    """
    if kind == "relu":
        return jax.nn.relu if beta is None else (lambda x: softplus_relu(x, beta))
    if beta is None:
        return jax.nn.relu6
    return lambda x: softplus_relu(x, beta) - softplus_relu(x - 6.0, beta)


class ReLU(nn.Module):
    """ReLU (`jax.nn.relu`), a module so that taps reach its output.

    Beta-smoothing is a property of the model (`ModelParams.with_beta`), not of
    the module: jaxsal's graph evaluator replaces every rectifier.
    """

    kind = "relu"

    def __call__(self, x):
        return jax.nn.relu(x)


class ReLU6(ReLU):
    """min(max(x, 0), 6) (`jax.nn.relu6`)."""

    kind = "relu6"

    def __call__(self, x):
        return jax.nn.relu6(x)


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
