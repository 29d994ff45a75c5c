"""Convolution backends: how the graph evaluator runs `conv_general_dilated`.

A model's convolutions are traced as `lax.conv_general_dilated`; the
evaluator (`jaxsal.graph.evaluate`) runs each NHWC / HWIO convolution
(no groups, no dilation) with the backend of the model,
`ModelParams.spec.conv` (`params.with_conv(name)`):

- "xla": `lax.conv_general_dilated` and XLA's own derivatives;
- "patches": the same forward, derivatives by `patch_conv` (the kernel
  gradient as one matmul per kernel tap);
- "matmul": `matmul_conv`: 1x1 convolutions as one matmul, small k x k ones
  as one matmul over the stacked kernel taps (im2col), the rest by
  `patch_conv`; every derivative order is then a matmul;
- "auto": "matmul" when the default JAX backend is the CPU, "xla" elsewhere
  (cuDNN is fast on its own).

Why: XLA:CPU turns a kernel gradient into a convolution whose window is the
whole feature map, and is slower than its own matmul on small maps and 1x1
kernels (docs/benchmark.md). Values agree to rounding (float64 derivatives
to 1e-11 in the tests). The backend is part of the model (static under
`jit`): no global state; `JAXSAL_CONV` only sets the default of new models.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

CONV_BACKENDS = ("auto", "xla", "patches", "matmul")
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
_NHWC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))


def check_conv(name: str) -> str:
    """`name` if it is a conv backend, else a ValueError naming the choices."""
    if name not in CONV_BACKENDS:
        raise ValueError(f'unknown conv backend "{name}"; choose one of {CONV_BACKENDS}')
    return name


def default_conv() -> str:
    """The conv backend of new models: `$JAXSAL_CONV`, or "auto"."""
    name = os.environ.get("JAXSAL_CONV", "auto")
    if name not in CONV_BACKENDS:
        raise ValueError(
            f'JAXSAL_CONV="{name}" is not a conv backend; unset it or choose one of {CONV_BACKENDS}'
        )
    return name


def resolve_conv(name: str) -> str:
    """ "auto" resolved for the default JAX backend: "matmul" on the CPU, "xla" elsewhere."""
    if name == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return check_conv(name)


def substitutable(params: dict) -> bool:
    """Can a `conv_general_dilated` with these parameters run on the matmul backends?"""
    dn = params["dimension_numbers"]
    specs = (tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec))
    return (
        specs == _NHWC
        and params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
        and tuple(params["lhs_dilation"]) == (1, 1)
        and tuple(params["rhs_dilation"]) == (1, 1)
        and not isinstance(params["padding"], str)
        and params.get("precision") is None
        and params.get("preferred_element_type") is None
    )


def run_conv(backend: str, x, kernel, params: dict, *, accumulate=None):
    """The convolution of a `conv_general_dilated` op on `backend` ("patches" or "matmul").

    `accumulate`: the dtype of the matmuls' accumulation and result (e.g.
    float32 for bfloat16 inputs); None: the inputs' dtype.
    """
    strides = tuple(params["window_strides"])
    padding = tuple(tuple(p) for p in params["padding"])
    if backend == "matmul":
        return matmul_conv(x, kernel, strides, padding, accumulate=accumulate)
    y = patch_conv(x, kernel, strides, padding, (1, 1))
    return y if accumulate is None else y.astype(accumulate)


def matmul_conv(x, kernel, strides, padding, im2col_limit: int | None = None, *,
                accumulate=None):  # fmt: skip
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
    instead. `accumulate`: the dtype of the matmul's accumulation and result.
    """
    kh, kw, cin, cout = kernel.shape
    (lo_h, hi_h), (lo_w, hi_w) = padding
    n, h, w = x.shape[:3]
    oh = (h + lo_h + hi_h - kh) // strides[0] + 1
    ow = (w + lo_w + hi_w - kw) // strides[1] + 1
    limit = IM2COL_LIMIT if im2col_limit is None else im2col_limit
    thin = IM2COL_IMAGE_CHANNELS < cin < IM2COL_MIN_CHANNELS
    if kh * kw > 1 and (oh * ow * kh * kw * cin > limit or thin):
        y = patch_conv(x, kernel, strides, padding, (1, 1))
        return y if accumulate is None else y.astype(accumulate)
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
    y = lax.dot_general(cols.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, cout),
                        (((1,), (0,)), ((), ())), preferred_element_type=accumulate)  # fmt: skip
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
