"""Attaching a rule to a layer: a `jax.custom_vjp` whose backward pass carries relevance.

`attach(rule, fn, xs, params)` is `fn(*xs, *params)` whose backward pass is
`rule.relevance` (`jaxsal.lrp.rules`): the ordinary backward pass of the model
then carries relevance instead of gradient (as in Zennit), and because the
backward pass is plain `jnp`, an LRP map can be differentiated again.

Half precision: in float16 and bfloat16 the rules' stabilisers underflow and
`R / stab(z)` overflows, so for half-precision layers the rule runs in
float32: the layer's function is traced at its half dtype and replayed with
every operation in float32 (`in_float32`), and the relevance is cast back,
saturating at the dtype's largest finite value instead of becoming inf.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxsal.lrp.rules import HALF, Layer, Rule

# Primitives whose sub-jaxpr `_eval_float32` runs inline, and where it is.
_INLINE = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "remat2": "jaxpr",
           "checkpoint": "jaxpr"}  # fmt: skip
_DTYPE_PARAMS = ("new_dtype", "preferred_element_type", "dtype")


def _up(a):
    """A half-precision array (or literal) as float32; anything else unchanged."""
    if a is not None and hasattr(a, "dtype") and jnp.dtype(a.dtype) in HALF:
        return jnp.asarray(a, jnp.float32)
    return a


def _eval_float32(jaxpr, consts, args) -> list:
    """Evaluates a jaxpr traced in half precision with every half value and dtype as float32."""
    env = {}

    def read(v):
        return _up(v.val) if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, map(_up, consts)))
    env.update(zip(jaxpr.invars, map(_up, args)))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        inner = eqn.params.get(_INLINE.get(eqn.primitive.name, ""))
        if isinstance(inner, jcore.ClosedJaxpr):
            outs = _eval_float32(inner.jaxpr, inner.consts, ins)
        elif isinstance(inner, jcore.Jaxpr):
            outs = _eval_float32(inner, [], ins)
        else:
            params = {
                k: jnp.float32 if k in _DTYPE_PARAMS and v is not None and jnp.dtype(v) in HALF
                else v
                for k, v in eqn.params.items()
            }  # fmt: skip
            out = eqn.primitive.bind(*ins, **params)
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def in_float32(fn: Callable, dtype) -> Callable:
    """`fn`, written for arrays of the half type `dtype`, run on float32 arrays in float32.

    `fn` is traced at `dtype` (its operations may carry half-precision literals
    and dtypes) and its operations are replayed in float32; the result is
    differentiable like any JAX function.
    """

    def run(*args):
        def spec(a):
            dt = dtype if jnp.issubdtype(a.dtype, jnp.floating) else a.dtype
            return jax.ShapeDtypeStruct(a.shape, dt)

        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*jax.tree.map(spec, args))
        outs = _eval_float32(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), outs)

    return run


def _half_dtype(arrays):
    return next((a.dtype for a in jax.tree.leaves(arrays) if jnp.dtype(a.dtype) in HALF), None)


def _down(r: jax.Array, dtype) -> jax.Array:
    """float32 relevance in a half type, saturating instead of overflowing to inf."""
    big = float(jnp.finfo(dtype).max)
    return jnp.clip(r, -big, big).astype(dtype)


def attach(rule: Rule, fn: Callable, xs: tuple, params: tuple = (), *, nonneg: bool = False):
    """`fn(*xs, *params)` whose backward pass is `rule.relevance` (a `jax.custom_vjp`).

    The parameters are explicit arguments (not closed over), and no cotangent
    flows to them through this rule: differentiating an LRP map with respect
    to the parameters differentiates the forward and the rule's backward code.
    In half precision the rule runs in float32 (see the module docstring).
    """

    @jax.custom_vjp
    def call(xs, params):
        return fn(*xs, *params)

    def call_fwd(xs, params):
        out = fn(*xs, *params)
        return out, (xs, params, out)

    def call_bwd(res, R):
        xs, params, out = res
        half = _half_dtype((xs, out, R))
        if half is None:
            w, b = (params + (None, None))[:2]
            rel = rule.relevance(Layer(fn, xs, w, b, out, nonneg), R)
            return tuple(r.astype(a.dtype) for r, a in zip(rel, xs)), None
        xs32, params32 = jax.tree.map(_up, (xs, params))
        w, b = (params32 + (None, None))[:2]
        layer = Layer(in_float32(fn, half), xs32, w, b, _up(out), nonneg)
        rel = rule.relevance(layer, _up(R))
        return tuple(_down(r, a.dtype) for r, a in zip(rel, xs)), None

    call.defvjp(call_fwd, call_bwd)
    return call(tuple(xs), tuple(params))
