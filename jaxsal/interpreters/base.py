"""The one interpreter signature, and the decorator that gives it to a method.

Every interpreter is called as `method(params, x, c, *, key=None, **hyper)`:
`params` a `ModelParams`, `x` an NHWC batch, `c` an int or one class per
image, `key` a PRNG key (needed by stochastic methods only), hyper-parameters
keyword-only. Inputs are validated on the eager call; the computation is
jitted, and the method composes with `jax.jit`, `vmap`, `pmap` and `grad`.
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
    """Wraps `core(params, x, c, *, key, **hyper)`: input checks, then a jitted call.

    Args:
      static: names of hyper-parameters that change the program (layer names,
        step counts, callables); the others are traced.
    """

    def decorate(core: Callable) -> Interpreter:
        jitted = jax.jit(core, static_argnames=static)

        @functools.wraps(core)
        def method(params, x, c, *, key=None, **hyper):
            x, c = check(params, x, c)
            return jitted(params, x, c, key=key, **hyper)

        method.core = core
        return method

    return decorate


def require_key(key, method: str) -> jax.Array:
    if key is None:
        raise ValueError(
            f"{method} is stochastic and needs an explicit PRNG key, e.g. key=jax.random.key(0)"
        )
    return key
