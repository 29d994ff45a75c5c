"""Checks of the methods' hyper-parameters, and the memory-safe chunk rule.

Counts (samples, steps), non-negative settings, choices among names, layer
names, baselines, dtypes, `jaxsal.init`'s arguments, and `chunk`: the noise
and path methods (`smoothgrad`, `vargrad`, `integrated_gradients`, ...)
process their samples in chunks, by default "auto": the largest divisor of
the sample count whose chunk of images stays under `AUTO_CHUNK_BYTES` of
input per pass (64 float32 RGB images of 224 x 224). An out-of-memory error
of XLA is re-raised as a `MemoryError` naming the chunk to try.
Each error names the argument and the fix (see `jaxsal.checks` for inputs).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.checks import check_finite, concrete, emit

# The "auto" chunk's budget: input bytes per pass, 64 float32 RGB images of 224 x 224.
AUTO_CHUNK_BYTES = 64 * 224 * 224 * 3 * 4


def check_count(
    value, name: str, method: str, *, minimum: int = 1, example: int = 50, why: str = ""
) -> int:
    """A positive Python int (samples, steps, masks): bools, floats and arrays are refused."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{method}: {name} must be a Python int, got {type(value).__name__} {value!r}; "
            f"e.g. {name}={example}"
        )
    if value < minimum:
        raise ValueError(
            f"{method}: {name} must be at least {minimum}{why}, got {value}; e.g. {name}={example}"
        )
    return int(value)


def check_nonnegative(value, name: str, method: str) -> None:
    """A finite value >= 0 (scalar or array): eagerly when concrete, inside `checked` when traced."""
    msg = f"{method}: {name} must be finite and >= 0, got {{bad}}; e.g. {name}=0.15"
    if value is None:
        return
    if concrete(value):
        v = np.asarray(value)
        if not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
            raise TypeError(f"{method}: {name} must be a real number, got {v.dtype}")
        bad = v[~(np.isfinite(v) & (v >= 0))]
        if bad.size:
            raise ValueError(msg.format(bad=bad.reshape(-1)[0]))
    else:
        ok = jnp.isfinite(value) & (value >= 0)
        emit(jnp.all(ok), msg, bad=jnp.min(jnp.where(ok, jnp.inf, value)))


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def auto_chunk(total: int, x_shape: tuple[int, ...], dtype) -> int:
    """The "auto" chunk: the largest divisor of `total` whose pass stays in the budget.

    One pass holds `chunk * N` images of x's shape; the rule keeps
    `chunk * N * H * W * C * itemsize <= AUTO_CHUNK_BYTES` (the input bytes of 64
    float32 images of 224 x 224 x 3, about 38.5 MB: 64 such images per pass, 32
    in float64, 128 in half precision; 4 images of 224 x 224 x 3 get chunk 16
    of 64 samples, 10 of 50). At least one sample per pass, whatever N.
    """
    per_image = math.prod(x_shape[1:]) * jnp.dtype(dtype).itemsize
    n = max(int(x_shape[0]), 1)
    per_pass = max(AUTO_CHUNK_BYTES // max(per_image * n, 1), 1)
    return max(d for d in divisors(total) if d <= per_pass)


def check_chunk(chunk, total: int, what: str, method: str, x_shape, dtype) -> int:
    """Resolves `chunk` ("auto", None or an int dividing `total`) to an int.

    Args:
      total: the number of `what` (samples, steps) that `chunk` must divide.
    """
    if chunk is None:
        return total
    if isinstance(chunk, str):
        if chunk != "auto":
            raise ValueError(
                f'{method}: chunk must be "auto", None (all {what} at once) or an int, got '
                f"{chunk!r}"
            )
        return auto_chunk(total, tuple(x_shape), dtype)
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer):
        raise TypeError(
            f'{method}: chunk must be "auto", None or an int ({what} per pass), got '
            f"{type(chunk).__name__} {chunk!r}"
        )
    if chunk < 1 or total % chunk:
        raise ValueError(
            f"{method}: chunk={chunk} must divide the number of {what} ({total}); choose one of "
            f'{", ".join(map(str, divisors(total)))}, or chunk="auto"'
        )
    return int(chunk)


def check_choice(value, name: str, method: str, choices) -> None:
    """`value` one of the strings `choices`."""
    if not isinstance(value, str) or value not in choices:
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        raise ValueError(
            f"{method}: unknown {name} {shown}; choose one of {', '.join(map(str, choices))}"
        )


def check_layer(layer, method: str, *, optional: bool = False) -> None:
    """A layer given by name (a str); None too when `optional` (the input)."""
    if layer is None and optional:
        return
    if not isinstance(layer, str):
        none = " or None for the input" if optional else ""
        raise TypeError(
            f'{method}: layer must be a layer path or alias such as "target" or "layer4"{none}, '
            f"got {type(layer).__name__} {layer!r}; jaxsal.layer_names(params) lists them"
        )


def check_baseline(baseline, x, method: str):
    """A baseline broadcastable to x, real, finite; returned cast to x's dtype."""
    if baseline is None:
        return None
    b = jnp.asarray(baseline) if concrete(baseline) else baseline
    if not (jnp.issubdtype(b.dtype, jnp.floating) or jnp.issubdtype(b.dtype, jnp.integer)):
        raise TypeError(f"{method}: baseline must be a real array, got {b.dtype}")
    try:
        jnp.broadcast_shapes(b.shape, x.shape)
        ok = len(b.shape) <= x.ndim and jnp.broadcast_shapes(b.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"{method}: baseline of shape {tuple(b.shape)} does not broadcast to x's shape "
            f"{tuple(x.shape)}; pass a scalar, one image (1, H, W, C) or one per image"
        )
    check_finite(b, f"{method}: baseline", "pass a finite baseline")
    return b.astype(x.dtype)


def check_dtype(dtype, what: str) -> jnp.dtype:
    """A floating dtype that JAX can hold (float64 needs `jax_enable_x64`)."""
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{what}: {dtype!r} is not a dtype; e.g. jnp.float32") from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(
            f"{what}: dtype must be floating point (float32, float64, float16, bfloat16), got {dt}"
        )
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{what}: dtype float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', "
            "True) first, or use float32"
        )
    return dt


def check_init(arch, *, num_classes=None, beta=None, dtype=jnp.float32, conv=None) -> None:
    """The arguments of `jaxsal.init` other than the key (see `check_key`)."""
    from jaxsal.graph._conv import check_conv
    from jaxsal.models.registry import ARCHITECTURES

    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(
            f"init: unknown architecture {arch!r}; known architectures: {', '.join(ARCHITECTURES)}"
        )
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"init: num_classes must be a positive int, got {num_classes!r}")
    if beta is not None and not isinstance(beta, jax.core.Tracer):
        b = np.asarray(beta)
        if b.ndim or not np.issubdtype(b.dtype, np.number) or not (np.isfinite(b) and b > 0):
            raise ValueError(
                f"init: beta must be None (ReLU) or a positive number (softplus(beta x) / beta), "
                f"got {beta!r}"
            )
    check_dtype(dtype, "init")
    if conv is not None:
        check_conv(conv)


# ------------------------------------------------------------------ out of memory


def is_out_of_memory(err: BaseException) -> bool:
    """An XLA allocation failure (RESOURCE_EXHAUSTED)."""
    return isinstance(err, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(err)


def out_of_memory(err: BaseException, method: str, x_shape, *, chunk=None, total=None,
                  what: str = "samples") -> MemoryError:  # fmt: skip
    """A `MemoryError` naming the images per pass and a smaller chunk (or batch) to try."""
    n, img = x_shape[0], "x".join(map(str, x_shape[1:]))
    xla = str(err).strip().splitlines()[0][:300]
    if chunk is not None:
        smaller = [d for d in divisors(total) if d < chunk]
        fix = (
            f"try chunk={smaller[-1]} (a divisor of {what}={total})"
            if smaller
            else f"chunk is already 1; pass fewer than {n} images per call"
        )
        used = f"with chunk={chunk} ({chunk} {what} x {n} images = {chunk * n} images of {img} per pass)"
        return MemoryError(f"{method} ran out of device memory {used}; {fix}. XLA: {xla}")
    return MemoryError(
        f"{method} ran out of device memory on {n} images of {img}; pass fewer images per "
        f"call. XLA: {xla}"
    )
