"""The one interpreter signature, and the decorator that gives it to a method.

Every interpreter is called as `method(params, x, c, *, key=None, **hyper)`:
`params` a `ModelParams`, `x` an NHWC batch, `c` an int or one class per
image, `key` a PRNG key (needed by stochastic methods only), hyper-parameters
keyword-only. Every argument is validated before the computation starts
(`jaxsal.checks`: values only when concrete, or inside `jaxsal.checked`);
the computation is jitted, and the public function itself composes with
`jax.jit`, `vmap` and `grad`, so it can sit inside a user's own jitted loss.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Protocol

import jax

from jaxsal.checks import check, check_key
from jaxsal.hyper import check_layer, is_out_of_memory, out_of_memory
from jaxsal.params import ModelParams


class Interpreter(Protocol):
    def __call__(
        self, params: ModelParams, x: jax.Array, c, *, key: jax.Array | None = None, **hyper
    ) -> jax.Array: ...


def _public_name(impl: Callable) -> str:
    name = impl.__name__.lstrip("_")
    return f"lrp.{name}" if impl.__module__.startswith("jaxsal.lrp") else name


def interpreter(
    *,
    static: tuple[str, ...] = (),
    validate: Callable | None = None,
    chunk_of: str | None = None,
) -> Callable[[Callable], Interpreter]:
    """Wraps `impl(params, x, c, *, key, **hyper)`: argument checks, then a jitted call.

    Before the jitted call, the wrapper checks `params`, `x` and `c`
    (`jaxsal.checks.check`), a given `key`, the names of the hyper-parameters
    and a `layer` argument, then runs `validate`. An eager call that runs out
    of device memory raises a `MemoryError` saying what to make smaller.

    Args:
      static: names of hyper-parameters that change the program (layer names,
        step counts, callables); the others are traced.
      validate: `validate(method, x, key, hyper) -> (key, hyper)`, the method's
        own checks; it gets every hyper-parameter (defaults filled in) and may
        return them resolved (e.g. `chunk="auto"` as an int).
      chunk_of: for methods that batch several copies of x per pass: the name
        of the hyper-parameter that `chunk` divides ("samples", "steps"). The
        eager call then waits for its result, so that an out-of-memory error
        is raised (and explained) there.
    """

    def decorate(impl: Callable) -> Interpreter:
        jitted = jax.jit(impl, static_argnames=static)
        name = _public_name(impl)
        sig = inspect.signature(impl)
        kw = {
            k: p.default
            for k, p in sig.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and k != "key"
        }
        open_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())

        @functools.wraps(impl)
        def method(params, x, c, *, key=None, **hyper):
            unknown = sorted(set(hyper) - set(kw))
            if unknown and not open_kw:
                raise TypeError(
                    f"{name} got unknown keyword argument{'s' * (len(unknown) > 1)} "
                    f"{', '.join(unknown)}; its hyper-parameters are: {', '.join(kw) or 'none'}"
                )
            missing = [k for k, v in kw.items() if v is inspect.Parameter.empty and k not in hyper]
            if missing:
                raise TypeError(f"{name} needs the keyword argument(s) {', '.join(missing)}")
            x, c = check(params, x, c)
            if key is not None:
                key = check_key(key, name)
            if "layer" in kw:
                default = kw["layer"]
                check_layer(hyper.get("layer", default), name,
                            optional=default is None or default is inspect.Parameter.empty)  # fmt: skip
            if validate is not None:
                full = {k: v for k, v in kw.items() if v is not inspect.Parameter.empty}
                key, hyper = validate(name, x, key, {**full, **hyper})
            try:
                out = jitted(params, x, c, key=key, **hyper)
                if chunk_of is not None and _concrete_tree(out):
                    out = jax.block_until_ready(out)
            except jax.errors.JaxRuntimeError as e:
                if not is_out_of_memory(e):
                    raise
                if chunk_of is None:
                    raise out_of_memory(e, name, x.shape) from e
                raise out_of_memory(e, name, x.shape, chunk=hyper["chunk"],
                                    total=hyper[chunk_of], what=chunk_of) from e  # fmt: skip
            return out

        return method

    return decorate


def _concrete_tree(tree) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(tree))


def require_key(key, method: str) -> jax.Array:
    """The key of a stochastic method: required, typed or legacy (see `checks.check_key`)."""
    if key is None:
        raise ValueError(
            f"{method} is stochastic and needs an explicit PRNG key, e.g. key=jax.random.key(0)"
        )
    return check_key(key, method)
