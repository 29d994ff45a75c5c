"""The one interpreter signature, and the decorator that gives it to a method.

Every interpreter is called as `method(params, x, c, *, key=None, **hyper)`:
`params` a `ModelParams`, `x` an NHWC batch, `c` an int or one class per
image, `key` a PRNG key (needed by stochastic methods only), hyper-parameters
keyword-only. Inputs are validated (values only when concrete: under a
user's `jit` only shapes and dtypes are known); the computation is jitted, and
the public function itself composes with `jax.jit`, `vmap` and `grad`, so it
can sit inside a user's own jitted loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

import jax

from jaxsal.checks import check
from jaxsal.params import ModelParams


class Interpreter(Protocol):
    def __call__(
        self, params: ModelParams, x: jax.Array, c, *, key: jax.Array | None = None, **hyper
    ) -> jax.Array: ...


def interpreter(*, static: tuple[str, ...] = ()) -> Callable[[Callable], Interpreter]:
    """Wraps `impl(params, x, c, *, key, **hyper)`: input checks, then a jitted call.

    Args:
      static: names of hyper-parameters that change the program (layer names,
        step counts, callables); the others are traced.
    """

    def decorate(impl: Callable) -> Interpreter:
        jitted = jax.jit(impl, static_argnames=static)

        @functools.wraps(impl)
        def method(params, x, c, *, key=None, **hyper):
            x, c = check(params, x, c)
            return jitted(params, x, c, key=key, **hyper)

        return method

    return decorate


def require_key(key, method: str) -> jax.Array:
    """The key of a stochastic method: required, typed or legacy (see `checks.check_key`)."""
    from jaxsal.checks import check_key

    if key is None:
        raise ValueError(
            f"{method} is stochastic and needs an explicit PRNG key, e.g. key=jax.random.key(0)"
        )
    return check_key(key, method)
