"""A model's forward pass as a flat list of primitive operations, with module scopes and taps.

`trace_graph(params, x_aval)` traces `params`'s forward pass to a jaxpr
(`jax.make_jaxpr`) and flattens it into a `Graph`: one `Op` per primitive
application, nested `jit` and `checkpoint` calls inlined, and every value
named by an integer reference. While tracing, every module call of a Flax
Linen or NNX model is recorded (`Call`: its path, class and parent), its
operations carry the call's scope (through `jax.named_scope`), and its output
goes through a tap (`jaxsal_tap`) named by its path. A plain function carries
only the taps its author put in with `jaxsal.tap`.

The graph is what jaxsal's evaluator runs (`jaxsal.graph.evaluate`), with
taps, LRP rules, modified rectifiers, beta-smoothing and the convolution
backend applied as substitutions of single operations: so these work on any
model built from standard operations, not only on jaxsal's own layers.
Graphs are cached per model architecture and input shape.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jcore

from jaxsal.graph._tap import tap_p

# Primitives whose sub-jaxpr is inlined into the flat graph.
_INLINE = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
           "remat2": "jaxpr", "checkpoint": "jaxpr"}  # fmt: skip
_SCOPE = re.compile(r"jaxsal_call:(\d+)")


@dataclasses.dataclass(frozen=True)
class Lit:
    """A literal operand (a Python or NumPy scalar of the jaxpr)."""

    val: Any


@dataclasses.dataclass(frozen=True)
class Call:
    """One module call recorded while tracing.

    Attributes:
      path: the module's path, dot-joined (e.g. "layer4.1.conv2"; "" for the root).
      cls: the module's class.
      parent: index of the enclosing call (None for the root).
      leaf: the call made no module call of its own.
    """

    path: str
    cls: type
    parent: int | None
    leaf: bool


@dataclasses.dataclass(frozen=True, eq=False)
class Op:
    """One primitive application.

    Attributes:
      index: position in `Graph.ops`.
      prim: the primitive.
      params: its bind parameters.
      ctx: the equation's context manager factory (as `jax.core.eval_jaxpr` uses it).
      ins: operands: int references or `Lit`.
      outs: int references of the results.
      scope: index of the innermost module call the operation ran in (None: outside modules).
      fn_name: for `custom_jvp_call`, the wrapped function ("jax.nn.relu" for
        jax's own activations, else its name); "" otherwise.
    """

    index: int
    prim: Any
    params: dict
    ctx: Any
    ins: tuple
    outs: tuple[int, ...]
    scope: int | None
    fn_name: str = ""

    @property
    def name(self) -> str:
        if self.fn_name:
            return f"{self.prim.name}[{self.fn_name}]"
        return self.prim.name

    @property
    def tap_name(self) -> str | None:
        return self.params["name"] if self.prim is tap_p else None


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """A traced forward pass (see the module docstring).

    Attributes:
      ops: the operations in execution order.
      ins: references of the inputs: the flattened `(params, state)` leaves, then x.
      outs: references (or `Lit`) of the outputs (the logits).
      consts: values of the jaxpr's constants, by reference.
      calls: the module calls, in call order.
      in_tree: the treedef of `(params, state)`.
      x_ref: reference of the model input.
      avals: the abstract value (shape, dtype) of every reference.
      out_tree: the treedef of the outputs (logits, or (logits, new state) in training mode).
    """

    ops: tuple[Op, ...]
    ins: tuple[int, ...]
    outs: tuple
    consts: dict
    calls: tuple[Call, ...]
    in_tree: Any
    x_ref: int
    avals: dict
    out_tree: Any = None

    def path_of(self, op: Op) -> str:
        """The module path an operation ran in ("" outside modules)."""
        return "" if op.scope is None else self.calls[op.scope].path

    @functools.cached_property
    def tap_names(self) -> tuple[str, ...]:
        """Every tap's name, in execution order, without repeats."""
        return tuple(dict.fromkeys(op.tap_name for op in self.ops if op.prim is tap_p))

    def describe(self, op: Op) -> str:
        """`op` for an error message: its primitive and where it runs."""
        where = self.path_of(op)
        return f"`{op.name}` (in {where!r})" if where else f"`{op.name}` (outside any module)"


# ---------------------------------------------------------------- tracing with scopes


class _Recorder:
    """Records module calls and wraps them in a named scope and an output tap."""

    def __init__(self):
        self.calls: list[list] = []  # [path, cls, parent, leaf]
        self.stack: list[int] = []

    def call(self, path: str, cls: type, run: Callable[[], Any]):
        cid = len(self.calls)
        parent = self.stack[-1] if self.stack else None
        if parent is not None:
            self.calls[parent][3] = False
        self.calls.append([path, cls, parent, True])
        self.stack.append(cid)
        try:
            with jax.named_scope(f"jaxsal_call:{cid}"):
                out = run()
        finally:
            self.stack.pop()
        if path and isinstance(out, jax.Array):
            out = tap_p.bind(out, name=path)
        return out

    def result(self) -> tuple[Call, ...]:
        return tuple(Call(p, c, par, leaf) for p, c, par, leaf in self.calls)


def _linen_forward(module, recorder: _Recorder, call_kwargs: dict, train: bool = False):
    import flax.linen as nn

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        mod = context.module
        path = ".".join(mod.path)
        return recorder.call(path, type(mod), lambda: next_fun(*args, **kwargs))

    def forward(params, state, x):
        variables = {"params": params, **state}
        with nn.intercept_methods(interceptor):
            if train:  # BatchNorm on batch statistics; the updated running ones come back too
                logits, updates = module.apply(variables, x, mutable=["batch_stats"],
                                               **call_kwargs)  # fmt: skip
                return logits, {**state, **updates}
            return module.apply(variables, x, **call_kwargs)

    return forward


def _nnx_forward(graphdef, recorder: _Recorder):
    from flax import nnx

    def forward(params, state, x):
        model = nnx.merge(graphdef, params, state)
        paths, types = {}, {}
        for path, node in nnx.iter_graph(model):
            if isinstance(node, nnx.Module) and id(node) not in paths:
                paths[id(node)] = ".".join(str(p) for p in path)
                types[type(node)] = type(node).__call__
        inside: set[int] = set()

        def wrap(original):
            def call(self, *args, **kwargs):
                key = id(self)
                if key not in paths or key in inside:  # super().__call__ of the same module
                    return original(self, *args, **kwargs)
                inside.add(key)
                try:
                    return recorder.call(paths[key], type(self),
                                         lambda: original(self, *args, **kwargs))  # fmt: skip
                finally:
                    inside.discard(key)

            return call

        saved = {t: t.__dict__.get("__call__", _MISSING) for t in types}
        try:
            for t, original in types.items():
                t.__call__ = wrap(original)
            return model(x)
        finally:
            for t, original in saved.items():
                if original is _MISSING:
                    del t.__call__
                else:
                    t.__call__ = original

    return forward


_MISSING = object()


def _function_forward(fn, has_params: bool):
    def forward(params, state, x):
        del state
        return fn(params, x) if has_params else fn(x)

    return forward


def model_forward(params, recorder: _Recorder, train: bool = False) -> Callable:
    """`forward(params, state, x) -> logits` of a `ModelParams`, recording module calls.

    With `train`, `-> (logits, new state)`: BatchNorm in training mode (Linen models only).
    """
    kind = params.spec.kind
    if train and kind != "linen":
        raise ValueError(
            f"training mode (BatchNorm on batch statistics) is supported for Linen models, not "
            f"{kind} models; train those in inference mode"
        )
    if kind == "linen":
        return _linen_forward(params.module, recorder, dict(params.spec.call_kwargs), train)
    if kind == "nnx":
        return _nnx_forward(params.module, recorder)
    if kind == "function":
        return _function_forward(params.module, params.spec.has_params)
    raise ValueError(f"unknown model kind {kind!r}")


# ---------------------------------------------------------------- flattening


def _innermost(stack: str, default: int | None) -> int | None:
    found = _SCOPE.findall(stack)
    return int(found[-1]) if found else default


def _flatten(closed, calls: tuple[Call, ...], in_tree, out_tree=None) -> Graph:
    ops: list[Op] = []
    consts: dict[int, Any] = {}
    avals: dict[int, Any] = {}
    counter = itertools.count()

    def fresh(v):
        ref = next(counter)
        avals[ref] = v.aval
        return ref

    def read(env, v):
        if isinstance(v, jcore.Literal):
            return Lit(v.val)
        return env[v]

    def bind_consts(env, constvars, values):
        for v, c in zip(constvars, values):
            ref = fresh(v)
            consts[ref] = c
            env[v] = ref

    def walk(jaxpr, env, stack: str, scope: int | None):
        for eqn in jaxpr.eqns:
            here = f"{stack}/{eqn.source_info.name_stack}"
            op_scope = _innermost(str(eqn.source_info.name_stack), scope)
            ins = tuple(read(env, v) for v in eqn.invars)
            key = _INLINE.get(eqn.primitive.name)
            if key is not None and key in eqn.params:
                sub = eqn.params[key]
                sub_jaxpr, sub_consts = (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (
                    sub, ())  # fmt: skip
                sub_env: dict = {}
                bind_consts(sub_env, sub_jaxpr.constvars, sub_consts)
                sub_env.update(zip(sub_jaxpr.invars, ins))
                walk(sub_jaxpr, sub_env, here, op_scope)
                for v, out in zip(eqn.outvars, sub_jaxpr.outvars):
                    env[v] = read(sub_env, out)
                continue
            outs = tuple(fresh(v) for v in eqn.outvars)
            env.update(zip(eqn.outvars, outs))
            params = eqn.primitive.get_bind_params(eqn.params)
            ops.append(Op(len(ops), eqn.primitive, params, eqn.ctx, ins, outs, op_scope,
                          _fn_name(eqn)))  # fmt: skip

    env: dict = {}
    bind_consts(env, closed.jaxpr.constvars, closed.consts)
    ins = tuple(fresh(v) for v in closed.jaxpr.invars)
    env.update(zip(closed.jaxpr.invars, ins))
    walk(closed.jaxpr, env, "", None)
    outs = tuple(read(env, v) for v in closed.jaxpr.outvars)
    return Graph(tuple(ops), ins, outs, consts, calls, in_tree, ins[-1], avals, out_tree)


def _fn_name(eqn) -> str:
    sub = eqn.params.get("call_jaxpr")
    if eqn.primitive.name not in ("custom_jvp_call", "custom_vjp_call") or sub is None:
        return ""
    info = getattr(getattr(sub, "jaxpr", sub), "debug_info", None)
    if info is None:
        return "?"
    name = info.func_name
    return f"jax.nn.{name}" if "jax/_src/nn/functions.py" in (info.func_src_info or "") else name


def _abstract(a):
    aval = jax.typeof(a) if hasattr(jax, "typeof") else jax.core.get_aval(a)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)


def trace_graph(params, x, *, train: bool = False) -> Graph:
    """The `Graph` of `params`'s forward pass on inputs shaped like `x` (cached).

    Args:
      params: a `jaxsal.ModelParams`.
      x: an array or `jax.ShapeDtypeStruct` with the input's shape and dtype.
      train: BatchNorm in training mode; the graph then also outputs the new state.
    """
    leaves, in_tree = jax.tree.flatten((params.params, params.state))
    avals = tuple((tuple(a.shape), a.dtype) for a in map(_abstract, leaves))
    xa = _abstract(x)
    key = (params.module, params.spec.trace_key(), in_tree, avals, (tuple(xa.shape), xa.dtype),
           train)  # fmt: skip
    return _cached_graph(key, params)


def _cached_graph(key, params) -> Graph:
    graph = _GRAPHS.get(key)
    if graph is None:
        graph = _build(params, key)
        if not any(isinstance(c, jax.core.Tracer) for c in graph.consts.values()):
            if len(_GRAPHS) >= _CACHE_SIZE:
                _GRAPHS.pop(next(iter(_GRAPHS)))
            _GRAPHS[key] = graph
    return graph


_GRAPHS: dict = {}
_CACHE_SIZE = 256


def _build(params, key) -> Graph:
    in_tree, avals, (x_shape, x_dtype), train = key[2], key[3], key[4], key[5]
    leaves = [jax.ShapeDtypeStruct(s, d) for s, d in avals]
    p_abs, s_abs = jax.tree.unflatten(in_tree, leaves)
    recorder = _Recorder()
    forward = model_forward(params, recorder, train)
    closed, out_shape = jax.make_jaxpr(forward, return_shape=True)(
        p_abs, s_abs, jax.ShapeDtypeStruct(x_shape, x_dtype)
    )
    out_tree = jax.tree.structure(out_shape)
    if train:
        return _flatten(closed, recorder.result(), in_tree, out_tree)
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(
            f"the model returns {len(closed.jaxpr.outvars)} arrays; jaxsal needs a model whose "
            "forward pass returns one array of logits (N, classes). Wrap it in a function that "
            "returns the logits only"
        )
    return _flatten(closed, recorder.result(), in_tree, out_tree)
