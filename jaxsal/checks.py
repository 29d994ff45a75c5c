"""Input validation with errors that name the bad argument and the fix.

The interpreters (`jaxsal.simple_grad` ... `jaxsal.lrp.attribute`), the
perturbation explainers and `jaxsal.init` validate their arguments here before
any computation, so that a mistake gives one error saying what to change
instead of an exception from deep inside JAX.

What is checked, and when:

- Static checks look at types, shapes, dtypes and Python hyper-parameters: the
  rank and NHWC layout of `x`, an empty batch (N = 0), a floating dtype equal
  to the parameters', the class index's dtype and shape, PRNG keys, sample and
  step counts, `chunk`, layer names. They always run, eagerly and under
  `jax.jit`, `vmap` or `grad` alike, because shapes and dtypes are known while
  tracing.
- Value checks look at array contents: a class index out of range, NaN or inf
  in `x` (or an integrated-gradients baseline), a negative noise level or
  stdev. They run when the value is concrete: an eager call, or an array that
  a jitted function closes over. Under a user's `jax.jit` the values are
  tracers and are NOT checked: a class of 5000 then selects no logit (an
  all-zero map), a class of -1 wraps round to the last class, a NaN input gives
  a NaN map.
- `checked(fn)` closes that gap. It runs `fn` (any function that calls jaxsal
  interpreters, jitted or not) under `jax.experimental.checkify`; while it
  traces, the value checks above are emitted as `checkify.check`s on the
  traced values, and a failed one raises the eager call's `ValueError`::

      safe = jaxsal.checked(jax.jit(loss))
      safe(params, x, c)  # ValueError: class index 5000 is out of range ...

  Outside `checked`, traced calls emit no checks (a `checkify.check` inside a
  plain `jax.jit` is an error). The switch is a `jax.make_user_context`, which
  is part of `jax.jit`'s cache key: a function traced inside `checked` is
  traced again outside it, and the reverse. The cost under `checked` is a
  reduction over `x` and `c` per interpreter call. Even there, values that
  jaxsal computes (NaN parameters, a map that overflows) and hyper-parameters
  passed as traced arrays (other than `noise_level` and `stdev`) are not
  checked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxsal.params import ModelParams

# Set while `checked` traces: value checks on tracers become `checkify.check`s.
_CHECKING = jax.make_user_context(default_value=False)

HALF = (jnp.float16, jnp.bfloat16)


def concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def checking() -> bool:
    """Whether value checks on traced values are being emitted (inside `checked`)."""
    return bool(_CHECKING.value)


def _all_finite(x) -> bool:
    # Eagerly, also when a concrete x is closed over inside an outer jit (else a tracer).
    with jax.ensure_compile_time_eval():
        return bool(jnp.all(jnp.isfinite(x)))


def emit(pred, msg: str, **values) -> None:
    """`checkify.check(pred, msg, **values)` inside `checked`; nothing elsewhere."""
    if checking():
        checkify.check(pred, msg, **values)


# ------------------------------------------------------------------ checked mode


_CHECK_SUFFIX = " (`check` failed)"


def checked(fn: Callable) -> Callable:
    """`fn` with jaxsal's value checks, also on traced values (under `jax.jit`).

    Runs `fn` under `jax.experimental.checkify` with the value checks (class
    index in range, finite input, non-negative noise) emitted as
    `checkify.check` while tracing inside it; see the module docstring for what
    is and is not checked.

    Args:
      fn: any function that calls jaxsal interpreters, e.g. `jax.jit(loss)`.

    Returns:
      A function with `fn`'s signature and outputs that raises `ValueError`,
      with the message of the eager check, when a check fails.

    Example:
      `jaxsal.checked(jax.jit(lambda p, x, c: jaxsal.gradcam(p, x, c).sum()))(p, x, c)`
    """
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _CHECKING(True):
            err, out = checkified(*args, **kwargs)
        msg = err.get()
        if msg is not None:
            raise ValueError(msg.split(_CHECK_SUFFIX)[0])
        return out

    return run


# ------------------------------------------------------------------ model and keys


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
    if isinstance(key, jax.Array | np.ndarray):
        dtype = key.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if key.ndim != 0:
                raise ValueError(
                    f"{method} needs one PRNG key, got a key array of shape {key.shape}; "
                    "pass one of them, e.g. keys[0]"
                )
            return key
        if dtype == np.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    got = type(key).__name__
    if isinstance(key, int | float) and not isinstance(key, bool):
        got += f" {key!r}; a seed is not a key: pass key=jax.random.key({int(key)})"
    elif hasattr(key, "dtype"):
        got += f" of dtype {key.dtype} and shape {tuple(key.shape)}"
    raise TypeError(f"{method} needs a PRNG key such as key=jax.random.key(0), got {got}")


# ------------------------------------------------------------------ x and c


def _float_leaves(tree) -> list:
    return [
        a
        for a in jax.tree.leaves(tree)
        if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)
    ]


def check_batch(x, what: str = "x") -> None:
    """At least one image: an empty batch (N = 0) is refused (a shape check: always runs)."""
    if x.shape[0] == 0:
        raise ValueError(
            f"{what} is an empty batch (N = 0, shape {tuple(x.shape)}); pass at least one image"
        )


def check_finite(x, what: str = "x", fix: str = "clean the input first") -> None:
    """No NaN or inf in `x`: eagerly when concrete, as a `checkify.check` inside `checked`."""
    msg = what + " has {bad} non-finite values (NaN or inf); " + fix
    if concrete(x):
        if not _all_finite(x):
            with jax.ensure_compile_time_eval():
                bad = int(jnp.sum(~jnp.isfinite(x)))
            raise ValueError(msg.format(bad=bad))
    else:
        emit(jnp.all(jnp.isfinite(x)), msg, bad=jnp.sum(~jnp.isfinite(x)))


def check_input(params: ModelParams, x) -> jax.Array:
    """`x` must be a finite, non-empty floating NHWC batch with the model's channels and dtype."""
    check_params(params)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        if isinstance(x, list | tuple):
            x = np.asarray(x)
        else:
            raise TypeError(
                f"x must be an array of images (N, H, W, C), got {type(x).__name__}; "
                "convert with jnp.asarray(x)"
            )
    x = jnp.asarray(x) if concrete(x) else x
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
    check_batch(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x must be a floating-point array (normalised like torchvision's inputs), got "
            f"{x.dtype}; convert with x.astype(jnp.float32)"
        )
    dtypes = sorted({str(a.dtype) for a in _float_leaves(params.params)})
    if len(dtypes) > 1:
        raise TypeError(
            f"the model's parameters mix dtypes ({', '.join(dtypes)}); cast them to one with "
            f"params.astype(jnp.{x.dtype})"
        )
    if dtypes and dtypes[0] != str(x.dtype):
        dt = dtypes[0]
        raise TypeError(
            f"x is {x.dtype} but the model's parameters are {dt} (convolutions refuse mixed "
            f"dtypes); convert with x.astype(jnp.{dt}) or params.astype(jnp.{x.dtype})"
        )
    check_finite(x)
    return x


def _class_range_message(k: int) -> str:
    return (
        "class index {bad} is out of range for a model with " + f"{k} classes (valid: 0 to {k - 1})"
    )


def check_class_values(c, num_classes: int) -> None:
    """Class indices in [0, num_classes): eagerly when concrete, inside `checked` when traced."""
    msg = _class_range_message(num_classes)
    if concrete(c):
        c_np = np.asarray(c)
        if c_np.size and (c_np.min() < 0 or c_np.max() >= num_classes):
            bad = c_np.min() if c_np.min() < 0 else c_np.max()
            raise ValueError(msg.format(bad=bad))
    elif c.size:
        bad = jnp.where(jnp.min(c) < 0, jnp.min(c), jnp.max(c))
        emit((jnp.min(c) >= 0) & (jnp.max(c) < num_classes), msg, bad=bad)


def check_class(params: ModelParams, x: jax.Array, c, num_classes: int | None = None) -> jax.Array:
    """`c` is an int or one int per image; returns an int array of shape (N,).

    Args:
      num_classes: the number of classes (default: the model's).
    """
    n = x.shape[0]
    k = params.num_classes if num_classes is None else num_classes
    if concrete(c):
        c_np = np.asarray(c)
        if not np.issubdtype(c_np.dtype, np.integer):
            raise TypeError(
                f"class index c must be an int or an int array, got {c_np.dtype}; convert with "
                "c.astype(jnp.int32) (or int(c) for one class)"
            )
        if c_np.ndim > 1 or (c_np.ndim == 1 and c_np.shape[0] != n):
            raise ValueError(
                f"c must be an int or have one entry per image, shape ({n},); got "
                f"shape {c_np.shape}"
            )
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.integer):
        raise TypeError(
            f"class index c must be an int or an int array, got {c.dtype}; convert with "
            "c.astype(jnp.int32)"
        )
    if c.ndim == 0:
        c = jnp.full((n,), c)
    elif c.shape != (n,):
        raise ValueError(f"c must be an int or have shape ({n},), got shape {c.shape}")
    check_class_values(c, k)
    return c


def check(params: ModelParams, x, c):
    """Both checks; returns `(x, c)` with `c` of shape (N,)."""
    x = check_input(params, x)
    return x, check_class(params, x, c)


# ------------------------------------------------------------------ hyper-parameters
