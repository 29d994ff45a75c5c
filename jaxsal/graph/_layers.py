"""Layers of a traced graph: which operations form one layer, and what kind of layer it is.

LRP rules and the rectifier rules of Guided Backprop act on *layers*, found
here from the graph's operations alone, so that they apply to any model:

1. Each operation that depends on the model input gets a *role* from its
   primitive: "conv" or "dense" (a convolution or matrix product with a
   weight), "affine" (addition, subtraction, multiplication or division by a
   constant: biases, BatchNorm in inference mode, input scaling), "relu" /
   "relu6" (`jax.nn.relu`, `jax.nn.relu6`, `max(x, 0)`), "max" (max pooling),
   "pool" (sum pooling, global sums, products with fixed matrices), "sum" (the
   sum of two activations: residual connections), "concat", "move" (reshapes,
   transposes, slices, padding, casts), "tap", or "other" (anything else:
   `tanh`, products of two activations, custom derivatives, ...).
2. Operations are grouped into layers: all operations of one call of a leaf
   module (a module that calls no other module, e.g. `nn.Conv`,
   `nn.BatchNorm`, jaxsal's `Conv`) form one layer; outside leaf modules each
   operation is a layer of its own, except that pooling absorbs the scalar
   scaling that follows it (sum then divide: an average) and, in a plain
   function, a convolution or dense product absorbs the per-channel affine
   operations that follow it (its bias, and a BatchNorm written inline).
3. Each layer gets a kind, a class of `jaxsal.models.layers` that composites
   map to rules: `Conv`, `Linear`, `BatchNorm` (affine), `ReLU`, `ReLU6`,
   `MaxPool`, `AvgPool` (or `AdaptiveAvgPool`), `Add`, `Concat`, `Flatten`
   (data movement). A leaf module of jaxsal's own layer classes keeps its
   class; Flax's `nn.Conv`, `nn.Dense`, `nn.BatchNorm` and their NNX
   counterparts are recognised too. A layer that fits no kind is
   "unsupported"; LRP and Guided Backprop refuse models that contain one,
   naming the operation and where it runs.

`MergeBatchNorm` (see `jaxsal.lrp.canonizers`) then folds an affine layer
into the convolution or dense layer whose only reader it is.
"""

from __future__ import annotations

import dataclasses
import functools

from jaxsal.graph._tap import tap_p
from jaxsal.graph._trace import Graph, Lit, Op

MOVE = frozenset({"reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims",
                  "convert_element_type", "copy", "copy_p", "slice", "pad", "rev",
                  "stop_gradient", "reduce_precision", "optimization_barrier"})  # fmt: skip
MAX = frozenset({"reduce_window_max", "reduce_max"})
POOL = frozenset({"reduce_window_sum", "reduce_sum"})
AFFINE_BINARY = frozenset({"add", "sub", "mul", "div"})


class UnsupportedOperation(ValueError):
    """A method met an operation it has no rule for."""


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """One layer of a graph.

    Attributes:
      index: position in the layer list.
      kind: "conv", "dense", "affine", "relu", "relu6", "max_pool", "avg_pool",
        "sum", "concat", "move" or "unsupported".
      cls: the layer class composites match (`jaxsal.models.layers`), None for "unsupported".
      ops: indices of the layer's operations (input-dependent ones), in order.
      ins: references the layer's operations read (tap outputs not resolved).
      out: reference of its output.
      name: the leaf module's path, or "<module path>/<primitive>:<op index>".
      weight_op: index of the convolution / dense operation ("conv", "dense").
      offender: index of the first unsupported operation ("unsupported").
    """

    index: int
    kind: str
    cls: type | None
    ops: tuple[int, ...]
    ins: tuple[int, ...]
    out: int
    name: str
    weight_op: int | None = None
    offender: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Analysis:
    """What the rules need to know about a graph.

    Attributes:
      graph: the graph.
      active: references that depend on the model input.
      roles: the role of every input-dependent operation, by op index.
      layers: the layers in execution order.
      producer: the layer producing each layer output, by reference (taps resolved).
      consumers: how many layer operations (taps excluded) read each reference.
      alias: tap outputs mapped to the reference they tap.
      nonneg: references known to be non-negative.
    """

    graph: Graph
    active: frozenset
    roles: dict
    layers: tuple[Layer, ...]
    producer: dict
    consumers: dict
    alias: dict
    nonneg: frozenset

    def resolve(self, ref):
        """The reference a (chain of) tap output(s) stands for."""
        while ref in self.alias:
            ref = self.alias[ref]
        return ref


def _is_zero(a, graph: Graph) -> bool:
    if isinstance(a, Lit):
        try:
            return float(a.val) == 0.0
        except TypeError:
            return False
    value = graph.consts.get(a)
    return value is not None and getattr(value, "shape", None) == () and float(value) == 0.0


def rectifier_kind(op: Op, graph: Graph, active) -> str | None:
    """ "relu" or "relu6" if `op` is a rectifier of an activation, else None."""
    if op.fn_name in ("jax.nn.relu", "jax.nn.relu6"):
        return op.fn_name.removeprefix("jax.nn.")
    if op.prim.name == "max" and len(op.ins) == 2:
        a, b = op.ins
        if _is_active(a, active) and _is_zero(b, graph):
            return "relu"
        if _is_active(b, active) and _is_zero(a, graph):
            return "relu"
    return None


def _is_active(a, active) -> bool:
    return not isinstance(a, Lit) and a in active


def _role(op: Op, graph: Graph, active, from_vars, function_model: bool) -> str:
    name = op.prim.name
    act = [_is_active(a, active) for a in op.ins]
    if op.prim is tap_p:
        return "tap"
    kind = rectifier_kind(op, graph, active)
    if kind is not None:
        return kind
    if name in MOVE:
        return "move" if act[0] and not any(act[1:]) else "other"
    if name == "conv_general_dilated":
        return "conv" if act[0] and not act[1] else "other"
    if name == "dot_general":
        if sum(act) != 1:
            return "other"
        other = op.ins[1] if act[0] else op.ins[0]
        weight = function_model or (not isinstance(other, Lit) and other in from_vars)
        if weight:
            return "dense" if act[0] else "other"
        return "pool"  # a product with a fixed matrix (adaptive average pooling)
    if name in ("add", "sub"):
        return "sum" if all(act) else "affine"
    if name == "mul":
        return "affine" if sum(act) == 1 else "other"
    if name == "div":
        return "affine" if act[0] and not act[1] else "other"
    if name == "neg":
        return "affine"
    if name in MAX:
        return "max"
    if name in POOL:
        return "pool"
    if name == "concatenate":
        return "concat"
    return "other"


def _scalar_operand(op: Op, active, graph: Graph) -> bool:
    """The constant operand of an affine op is a scalar (a pure rescaling or shift)."""
    for a in op.ins:
        if _is_active(a, active):
            continue
        if isinstance(a, Lit):
            return True
        return all(d == 1 for d in graph.avals[a].shape)
    return True  # neg


_KIND_OF_ROLE = {"relu": "relu", "relu6": "relu6", "max": "max_pool", "sum": "sum",
                 "concat": "concat"}  # fmt: skip


def _classify(roles: list[str]) -> tuple[str, int | None]:
    """The kind of a chain of roles (in order), and the position of its weight op."""
    core = [r for r in roles if r != "move"]
    if not core:
        return "move", None
    if "other" in core:
        return "unsupported", None
    weights = [i for i, r in enumerate(roles) if r in ("conv", "dense")]
    if weights:
        (w,) = weights if len(weights) == 1 else (None,)
        if w is None:
            return "unsupported", None
        before, after = roles[:w], roles[w + 1 :]
        if all(r == "move" for r in before) and all(r == "affine" for r in after):
            return roles[w], w
        return "unsupported", None
    kinds = set(core)
    if kinds <= {"affine"}:
        return "affine", None
    if kinds <= {"pool", "affine"} and "pool" in kinds:
        return "avg_pool", None
    if len(core) == 1 and core[0] in _KIND_OF_ROLE:
        return _KIND_OF_ROLE[core[0]], None
    return "unsupported", None


def analyse(graph: Graph, function_model: bool) -> Analysis:
    """Roles, layers and data flow of `graph` (cached per graph)."""
    return _analyse(graph, function_model)


@functools.lru_cache(maxsize=64)
def _analyse(graph: Graph, function_model: bool) -> Analysis:
    from jaxsal.graph._kinds import layer_class

    active = {graph.x_ref}
    from_vars = set(graph.ins[:-1])
    act_ops: list[Op] = []
    for op in graph.ops:
        refs = [a for a in op.ins if not isinstance(a, Lit)]
        if any(a in active for a in refs):
            active.update(op.outs)
            act_ops.append(op)
        elif any(a in from_vars for a in refs):
            from_vars.update(op.outs)
    roles = {op.index: _role(op, graph, active, from_vars, function_model) for op in act_ops}
    alias = {op.outs[0]: op.ins[0] for op in act_ops if roles[op.index] == "tap"}

    def resolve(ref):
        while ref in alias:
            ref = alias[ref]
        return ref

    consumers: dict = {}
    for op in act_ops:
        if roles[op.index] == "tap":
            continue
        for a in op.ins:
            if _is_active(a, active):
                r = resolve(a)
                consumers[r] = consumers.get(r, 0) + 1
    for a in graph.outs:
        if not isinstance(a, Lit):
            r = resolve(a)
            consumers[r] = consumers.get(r, 0) + 1

    groups = _group(graph, act_ops, roles, active, resolve, consumers, function_model)
    layers, producer = [], {}
    nonneg: set = set()
    for ops in groups:
        op_roles = [roles[o.index] for o in ops]
        kind, w = _classify(op_roles)
        if kind == "unsupported" and len(ops) > 1 and _scope_leaf(graph, ops[0]) is not None:
            # a leaf module mixing several layers: fall back to one layer per operation
            for sub in _group(graph, ops, roles, active, resolve, consumers, function_model,
                              scoped=False):  # fmt: skip
                _add_layer(graph, sub, roles, active, resolve, layers, producer, nonneg,
                           layer_class)  # fmt: skip
            continue
        _add_layer(graph, ops, roles, active, resolve, layers, producer, nonneg, layer_class,
                   kind, w)  # fmt: skip
    return Analysis(graph, frozenset(active), roles, tuple(layers), producer, consumers, alias,
                    frozenset(nonneg))  # fmt: skip


def _scope_leaf(graph: Graph, op: Op):
    """The call index of `op`'s leaf module, or None when it runs outside a leaf module."""
    if op.scope is None:
        return None
    return op.scope if graph.calls[op.scope].leaf else None


def _group(graph, ops, roles, active, resolve, consumers, function_model, scoped=True):
    """Operations grouped into layers (see the module docstring), taps left out."""
    groups: list[list[Op]] = []
    last_scope = object()
    for op in ops:
        role = roles[op.index]
        if role == "tap":
            last_scope = object()
            continue
        scope = _scope_leaf(graph, op) if scoped else None
        if scope is not None and scope == last_scope and groups:
            groups[-1].append(op)
            continue
        last_scope = scope
        if scope is None and groups and _absorbs(groups[-1], op, roles, active, resolve,
                                                 consumers, graph, function_model):  # fmt: skip
            groups[-1].append(op)
            continue
        groups.append([op])
    return groups


def _absorbs(group, op, roles, active, resolve, consumers, graph, function_model) -> bool:
    """Does the layer `group` (outside leaf modules) take `op` in as its tail?"""
    prev = group[-1]
    if _scope_leaf(graph, prev) is not None:
        return False
    srcs = [resolve(a) for a in op.ins if _is_active(a, active)]
    if srcs != [prev.outs[0]] or consumers.get(prev.outs[0], 0) != 1:
        return False
    head = [roles[o.index] for o in group if roles[o.index] != "move"]
    role = roles[op.index]
    if head and head[0] == "pool":
        return role == "move" or (role == "affine" and _scalar_operand(op, active, graph))
    if function_model and head and head[0] in ("conv", "dense"):
        return role == "affine"
    return False


def _add_layer(graph, ops, roles, active, resolve, layers, producer, nonneg, layer_class,
               kind=None, w=None):  # fmt: skip
    if kind is None:
        kind, w = _classify([roles[o.index] for o in ops])
    inside = {r for o in ops for r in o.outs}
    ins = []  # the references the layer's operations read (tap outputs included)
    for o in ops:
        for a in o.ins:
            if _is_active(a, active) and a not in inside and a not in ins:
                ins.append(a)
    out = ops[-1].outs[0]
    leaf = _scope_leaf(graph, ops[0])
    if leaf is not None and all(_scope_leaf(graph, o) == leaf for o in ops):
        name = graph.calls[leaf].path
        module_cls = graph.calls[leaf].cls
    else:
        where = graph.path_of(ops[0])
        name = f"{where}/{ops[0].prim.name}:{ops[0].index}" if where else (
            f"{ops[0].prim.name}:{ops[0].index}")  # fmt: skip
        module_cls = None
    offender = None
    if kind == "unsupported":
        offender = next((o.index for o in ops if roles[o.index] == "other"), ops[0].index)
    cls = None if kind == "unsupported" else layer_class(kind, module_cls)
    layer = Layer(len(layers), kind, cls, tuple(o.index for o in ops), tuple(ins), out, name,
                  None if w is None else ops[w].index, offender)  # fmt: skip
    layers.append(layer)
    producer[out] = layer.index
    if kind in ("relu", "relu6"):
        nonneg.add(out)
    elif kind in ("max_pool", "avg_pool", "sum", "concat", "move") and ins:
        if all(resolve(i) in nonneg for i in ins):
            nonneg.add(out)


def unsupported(analysis: Analysis, method: str) -> None:
    """Raises `UnsupportedOperation` for the first layer `method` has no rule for."""
    for layer in analysis.layers:
        if layer.kind == "unsupported":
            op = analysis.graph.ops[layer.offender]
            raise UnsupportedOperation(
                f"{method} has no rule for the operation {analysis.graph.describe(op)}; it "
                "supports convolutions, dense layers, BatchNorm, ReLU / ReLU6 (jax.nn.relu, "
                "jax.nn.relu6, max(x, 0)), max and average pooling, global mean pooling, "
                "residual sums, concatenation and reshapes. Use a gradient method "
                "(simple_grad, integrated_gradients, gradcam, ...) for this model, or replace "
                "the operation"
            )
