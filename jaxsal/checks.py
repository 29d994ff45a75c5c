"""Input validation with errors that name the problem and the fix.

Value checks (finite input, class range) run only on concrete arrays: under
`jax.jit` the values are not known, so they are checked by the caller's eager
call or not at all. Shape checks always run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.params import ModelParams


def _concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def _all_finite(x) -> bool:
    # Eagerly, also when a concrete x is closed over inside an outer jit (else a tracer).
    with jax.ensure_compile_time_eval():
        return bool(jnp.all(jnp.isfinite(x)))


def check_params(params) -> ModelParams:
    """`params` must be a `ModelParams`; other model forms get the way in named."""
    if isinstance(params, ModelParams):
        return params
    kind = type(params).__name__
    if isinstance(params, dict) and "params" in params:
        hint = (
            "this looks like a Flax variables dict: pass jaxsal.wrap(module, variables, "
            "input_shape=(H, W, C))"
        )
    elif callable(params):
        hint = (
            "for a Flax NNX module or a function f(x) -> logits use jaxsal.wrap(model, "
            "input_shape=(H, W, C))"
        )
    else:
        hint = "build one with jaxsal.init, jaxsal.load, jaxsal.wrap or from_torchvision"
    raise TypeError(f"params must be a jaxsal.ModelParams, got {kind}; {hint}")


def check_key(key, method: str) -> jax.Array:
    """A PRNG key: a typed key (`jax.random.key`) or a legacy uint32 key (`PRNGKey`).

    Legacy keys are converted to typed keys; anything else is refused with the fix.
    """
    if isinstance(key, jax.Array) or isinstance(key, np.ndarray):
        dtype = key.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if key.ndim != 0:
                raise ValueError(
                    f"{method} needs one PRNG key, got a key array of shape {key.shape}"
                )
            return key
        if dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    raise TypeError(
        f"{method} needs a PRNG key such as key=jax.random.key(0), got {type(key).__name__}"
        + (f" {key!r}" if isinstance(key, int | float) else "")
    )


def check_input(params: ModelParams, x) -> jax.Array:
    """`x` must be a finite floating NHWC batch with the model's channels and dtype."""
    check_params(params)
    x = jnp.asarray(x) if _concrete(x) else x
    c = params.in_channels
    if x.ndim != 4:
        hint = " Add a batch axis with x[None]." if x.ndim == 3 else ""
        raise ValueError(
            f"x must be a batch of images of shape (N, H, W, {c}) (NHWC), got shape "
            f"{tuple(x.shape)}.{hint}"
        )
    if x.shape[-1] != c:
        hint = (
            " It looks like NCHW: transpose with x.transpose(0, 2, 3, 1)."
            if x.shape[1] == c
            else ""
        )
        raise ValueError(
            f"x must be NHWC with {c} channels for this model, got shape {tuple(x.shape)}.{hint}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be a floating-point array (normalised like torchvision's inputs), got "
            f"{x.dtype}; convert with x.astype(jnp.float32)"
        )
    leaves = [a for a in jax.tree.leaves(params.params) if hasattr(a, "dtype")]
    if leaves and leaves[0].dtype != x.dtype:
        dt = leaves[0].dtype
        raise TypeError(
            f"x is {x.dtype} but the model's parameters are {dt} (convolutions refuse mixed "
            f"dtypes); convert with x.astype(jnp.{dt}) or params.astype(jnp.{x.dtype})"
        )
    if _concrete(x) and not _all_finite(x):
        bad = int(np.sum(~np.isfinite(np.asarray(x))))
        raise ValueError(f"x has {bad} non-finite values (NaN or inf); clean the input first")
    return x


def check_class(params: ModelParams, x: jax.Array, c) -> jax.Array:
    """`c` is an int or one int per image; returns an int array of shape (N,)."""
    n = x.shape[0]
    if _concrete(c):
        c_np = np.asarray(c)
        if not np.issubdtype(c_np.dtype, np.integer):
            raise TypeError(f"class index c must be an int or an int array, got {c_np.dtype}")
        if c_np.ndim > 1 or (c_np.ndim == 1 and c_np.shape[0] != n):
            raise ValueError(
                f"c must be an int or have one entry per image, shape ({n},); got "
                f"shape {c_np.shape}"
            )
        k = params.num_classes
        if c_np.size and (c_np.min() < 0 or c_np.max() >= k):
            raise ValueError(
                f"class index {c_np.min() if c_np.min() < 0 else c_np.max()} is out of range "
                f"for a model with {k} classes (valid: 0 to {k - 1})"
            )
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.integer):
        raise TypeError(f"class index c must be an int or an int array, got {c.dtype}")
    if c.ndim == 0:
        c = jnp.full((n,), c)
    elif c.shape != (n,):
        raise ValueError(f"c must be an int or have shape ({n},), got shape {c.shape}")
    return c


def check(params: ModelParams, x, c):
    """Both checks; returns `(x, c)` with `c` of shape (N,)."""
    x = check_input(params, x)
    return x, check_class(params, x, c)
