"""The graph evaluator: a model's forward pass with taps, rules and substitutions applied.

`evaluate(params, x, ...)` runs the traced graph of `params` (see
`jaxsal.graph._trace`) operation by operation, as `jax.core.eval_jaxpr`
does, except that:

- taps record activations and add perturbations (`taps`, `deltas`): the
  gradient with respect to a perturbation is the gradient at the layer;
- every ReLU / ReLU6 becomes softplus(beta x) / beta when the model has a
  `beta` (beta-smoothing), and goes through `rectifier(act, x)` when given
  (Guided Backprop, DeconvNet);
- every NHWC convolution runs on the model's conv backend
  (`jaxsal.graph._conv`);
- under an LRP plan (`LrpPlan`), each layer with a rule is computed by
  `jaxsal.lrp.attach.attach` (its backward pass carries relevance), and each
  BatchNorm folded by a canonizer disappears into the layer before it.

Everything it emits is ordinary JAX, so the result composes with `jit`,
`vmap` and `grad` (second order included).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxsal.graph._conv import resolve_conv, run_conv, substitutable
from jaxsal.graph._layers import Analysis, Layer, analyse
from jaxsal.graph._tap import tap_p
from jaxsal.graph._trace import Graph, Lit, Op, trace_graph
from jaxsal.models.layers import rectifier as rectifier_fn


class LayerNotFoundError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, eq=False)
class LrpPlan:
    """What LRP does to each layer of one graph.

    Attributes:
      analysis: the graph's layers.
      rules: {layer index: rule} for layers whose backward pass carries relevance.
      folds: {linear layer index: affine layer index} merged by canonizers.
    """

    analysis: Analysis
    rules: Mapping[int, object]
    folds: Mapping[int, int]


def evaluate(
    params,
    x: jax.Array,
    *,
    taps: Sequence[str] = (),
    deltas: Mapping[str, jax.Array] | None = None,
    rectifier: Callable | None = None,
    max_pool: Callable | None = None,
    lrp: Callable[[Graph], LrpPlan] | None = None,
    train: bool = False,
):
    """Runs the model; returns `(logits, activations)` with one activation per tap.

    Args:
      params: a `jaxsal.ModelParams`.
      x: the input batch.
      taps: layer names (resolved paths) whose activations are returned.
      deltas: arrays added to those activations (zeros, to take gradients there).
      rectifier: `rectifier(act, x) -> y` replacing every ReLU / ReLU6 (`act`
        is the model's own activation, beta-smoothed or not).
      max_pool: `max_pool(pool, x) -> y` replacing every max pooling (`pool` is
        the model's own pooling of `x`), e.g. for DeepLIFT's rule.
      lrp: a function from the graph to its `LrpPlan`.
      train: BatchNorm in training mode (batch statistics); then returns
        `(logits, activations, new state)`, the state with the updated running statistics.
    """
    graph = trace_graph(params, x, train=train)
    plan = None if lrp is None else lrp(graph)
    run = _Run(graph, params, tuple(taps), deltas or {}, rectifier, plan, max_pool)
    return run.go(jax.tree.leaves((params.params, params.state)), x)


def layer_names(params, x) -> list[str]:
    """Every module path and tap of `params`'s graph on inputs like `x`, in call order."""
    graph = trace_graph(params, x)
    names = [c.path for c in graph.calls if c.path]
    names += [t for t in graph.tap_names if t not in names]
    return list(dict.fromkeys(names))


class _Run:
    def __init__(self, graph: Graph, params, taps, deltas, rectifier, plan: LrpPlan | None,
                 max_pool=None):  # fmt: skip
        self.graph = graph
        self.beta = params.beta
        self.aliases = params.spec.alias_map
        self.conv = resolve_conv(params.spec.conv)
        self.precision = params.spec.precision
        self.taps = set(taps)
        self.deltas = deltas
        self.rectifier = rectifier
        self.max_pool = max_pool
        self.plan = plan
        self.function_model = params.spec.kind == "function"
        need_roles = plan is not None or rectifier or max_pool or self.beta is not None
        self.analysis = analyse(graph, self.function_model) if need_roles else None
        self.acts: dict[str, jax.Array] = {}
        self.deferred: dict[int, Callable] = {}  # op index -> computes a layer
        self.skip: set[int] = set()
        self.interior_taps: dict[int, str] = {}
        if plan is not None:
            self._schedule(plan)

    # ------------------------------------------------------------ scheduling of LRP layers

    def _schedule(self, plan: LrpPlan):
        layers = plan.analysis.layers
        folded_away = set(plan.folds.values())
        for layer in layers:
            if layer.index in folded_away:
                continue
            rule = plan.rules.get(layer.index)
            fold = plan.folds.get(layer.index)
            if rule is None and fold is None:
                continue
            ops = list(layer.ops)
            if fold is not None:
                ops += list(layers[fold].ops)
                self._mark_interior_taps(layer, layers[fold])
            self.skip.update(ops)
            self.deferred[ops[-1]] = (layer, rule, None if fold is None else layers[fold])

    def _mark_interior_taps(self, linear: Layer, affine: Layer):
        a = self.plan.analysis
        for op in self.graph.ops:
            if op.prim is tap_p and a.resolve(op.ins[0]) == linear.out:
                if op.index < max(affine.ops):
                    self.interior_taps[op.index] = op.params["name"]

    # ------------------------------------------------------------ evaluation

    def read(self, a):
        return a.val if isinstance(a, Lit) else self.env[a]

    def go(self, leaves, x):
        g = self.graph
        self.env = dict(g.consts)
        self.env.update(zip(g.ins, [*leaves, x]))
        for op in g.ops:
            if op.index in self.interior_taps:
                name = self.interior_taps[op.index]
                if name in self.taps:
                    raise LayerNotFoundError(
                        f'layer "{name}" lies inside a convolution with a folded BatchNorm; '
                        "pass canonizers=() to keep BatchNorm unfolded, or choose the "
                        "BatchNorm's output"
                    )
                continue
            if op.index in self.deferred:
                layer, rule, fold = self.deferred[op.index]
                self.env[layer.out if fold is None else fold.out] = self._layer(layer, rule, fold)
                continue
            if op.index in self.skip:
                continue
            outs = self._op(op, [self.read(a) for a in op.ins])
            self.env.update(zip(op.outs, outs))
        missing = [t for t in self.taps if t not in self.acts]
        if missing:
            raise self.not_found(missing[0])
        outs = [self.read(a) for a in g.outs]
        if len(outs) == 1:
            return outs[0], self.acts
        logits, state = jax.tree.unflatten(g.out_tree, outs)
        return logits, self.acts, state

    def not_found(self, name: str) -> LayerNotFoundError:
        import difflib

        names = [c.path for c in self.graph.calls if c.path] + list(self.graph.tap_names)
        names = list(dict.fromkeys(names))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        top = list(dict.fromkeys(n.split(".")[0] for n in names))
        example = f' (e.g. "{names[len(names) // 2]}")' if names else ""
        aliases = ", ".join(self.aliases) or "none"
        return LayerNotFoundError(
            f'layer "{name}" not found.{hint} Top-level layers: {", ".join(top) or "none"}; '
            f"aliases: {aliases}. Every module's path is accepted{example}; "
            f"jaxsal.layer_names(params) lists all {len(names)}. In a plain function, mark a "
            "point with jaxsal.tap(name, x)."
        )

    def _op(self, op: Op, vals: list) -> list:
        """One operation with the substitutions applied; returns its outputs."""
        if op.prim is tap_p:
            name = op.params["name"]
            v = vals[0]
            if name in self.taps:
                if name in self.acts:
                    raise ValueError(f'layer "{name}" is called twice; its output is ambiguous')
                self.acts[name] = v
                if name in self.deltas:
                    v = v + self.deltas[name]
            return [v]
        if op.prim.name in ("conv_general_dilated", "dot_general") and self.precision:
            return [self._low_precision(op, vals)]
        if op.prim.name == "conv_general_dilated" and self.conv != "xla":
            if substitutable(op.params) and vals[0].dtype == vals[1].dtype:
                return [run_conv(self.conv, vals[0], vals[1], op.params)]
        if self.analysis is not None and op.index in self.analysis.roles:
            kind = self.analysis.roles[op.index]
            if kind in ("relu", "relu6") and (self.beta is not None or self.rectifier):
                x = next(v for a, v in zip(op.ins, vals) if not isinstance(a, Lit)
                         and a in self.analysis.active)  # fmt: skip
                act = rectifier_fn(kind, self.beta)
                return [self.rectifier(act, x) if self.rectifier else act(x)]
            if kind == "max" and self.max_pool is not None and len(op.ins) == 1:

                def pool(v, op=op):
                    with op.ctx.manager:
                        return op.prim.bind(v, **op.params)

                return [self.max_pool(pool, vals[0])]
        with op.ctx.manager:
            out = op.prim.bind(*vals, **op.params)
        return list(out) if op.prim.multiple_results else [out]

    def _low_precision(self, op: Op, vals: list):
        """A convolution or matrix product on `precision` inputs with float32 accumulation."""
        out_dtype = jnp.result_type(vals[0], vals[1])
        low = jnp.dtype(self.precision)
        a, b = vals[0].astype(low), vals[1].astype(low)
        acc = jnp.promote_types(out_dtype, jnp.float32)
        if (
            op.prim.name == "conv_general_dilated"
            and self.conv != "xla"
            and substitutable(op.params)
        ):
            y = run_conv(self.conv, a, b, op.params, accumulate=acc)
        else:
            with op.ctx.manager:
                y = op.prim.bind(a, b, **{**op.params, "preferred_element_type": acc})
        return y.astype(out_dtype)

    # ------------------------------------------------------------ LRP layers

    def _layer(self, layer: Layer, rule, fold: Layer | None):
        from jaxsal.lrp.attach import attach

        a = self.plan.analysis
        xs = [self.env[r] for r in layer.ins]
        nonneg = bool(layer.ins) and all(a.resolve(r) in a.nonneg for r in layer.ins)
        if layer.kind in ("conv", "dense"):
            fn, w, b = self._linear(layer, fold)
            if rule is None:
                return fn(*xs, w, b)
            return attach(rule, fn, xs, (w, b), nonneg=nonneg)
        if layer.kind == "affine":
            s, t = self._affine(layer.ops)
            fn = _scale_shift
            if rule is None:
                return fn(*xs, s, t)
            return attach(rule, fn, xs, (s, t), nonneg=nonneg)
        return attach(rule, self._segment_fn(layer), xs, nonneg=nonneg)

    def _segment_fn(self, layer: Layer):
        ops = [self.graph.ops[i] for i in layer.ops]

        def fn(*xs):
            local = dict(zip(layer.ins, xs))
            for op in ops:
                vals = [local[a] if (not isinstance(a, Lit) and a in local) else self.read(a)
                        for a in op.ins]  # fmt: skip
                local.update(zip(op.outs, self._op(op, vals)))
            return local[layer.out]

        return fn

    def _affine(self, op_indices) -> tuple:
        """(S, T) with `y = x * S + T` for a chain of affine operations (None: 1 and 0)."""
        active = self.plan.analysis.active
        s = t = None
        for i in op_indices:
            op = self.graph.ops[i]
            name = op.prim.name
            if name in ("convert_element_type", "copy", "copy_p"):
                continue
            if name == "neg":
                s = -1.0 if s is None else -s
                t = None if t is None else -t
                continue
            x_first = not isinstance(op.ins[0], Lit) and op.ins[0] in active
            c = self.read(op.ins[1] if x_first else op.ins[0])
            if name == "add":
                t = c if t is None else t + c
            elif name == "sub" and x_first:
                t = -c if t is None else t - c
            elif name == "sub":  # c - x
                s = -1.0 if s is None else -s
                t = c if t is None else c - t
            elif name == "mul":
                s = c if s is None else s * c
                t = None if t is None else t * c
            elif name == "div":
                s = 1.0 / c if s is None else s / c
                t = None if t is None else t / c
            else:
                raise AssertionError(f"not an affine operation: {name}")
        return s, t

    def _linear(self, layer: Layer, fold: Layer | None):
        """`fn(x, w, b)` of a conv / dense layer, with its weight and bias (BatchNorm folded)."""
        g = self.graph
        w_op = g.ops[layer.weight_op]
        pre = [g.ops[i] for i in layer.ops if i < layer.weight_op]
        tail = [i for i in layer.ops if i > layer.weight_op]
        if fold is not None:
            tail += list(fold.ops)
        w0 = self.read(w_op.ins[1])
        out_ndim = len(g.avals[w_op.outs[0]].shape)
        if w_op.prim.name == "conv_general_dilated":
            k_axis = w_op.params["dimension_numbers"].rhs_spec[0]
            c_axis = w_op.params["dimension_numbers"].out_spec[1]
        else:
            (_, rc), _ = w_op.params["dimension_numbers"]
            free = [d for d in range(w0.ndim) if d not in rc]
            if len(free) != 1:
                raise ValueError(f"a dense layer needs a weight with one output axis: {layer.name}")
            k_axis, c_axis = free[0], out_ndim - 1
        s, t = self._affine(tail)
        channels = w0.shape[k_axis]
        w = w0 if s is None else w0 * _per_channel(s, channels, k_axis, w0.ndim, layer)
        b = None if t is None else _per_channel(t, channels, 0, 1, layer)

        def fn(x, w, b):
            v = x
            for op in pre:
                v = self._op(op, [v] + [self.read(a) for a in op.ins[1:]])[0]
            y = self._op(w_op, [v, w])[0]
            if b is not None:
                shape = [1] * y.ndim
                shape[c_axis] = -1
                y = y + b.reshape(shape)
            return y

        return fn, w, b


def _scale_shift(x, s, t):
    y = x if s is None else x * s
    return y if t is None else y + t


def _per_channel(v, channels: int, axis: int, ndim: int, layer: Layer):
    """A scalar or per-channel constant as a vector shaped to broadcast along `axis`."""
    v = jnp.asarray(v)
    if v.size == 1:
        vec = jnp.full((channels,), v.reshape(()))
    else:
        squeezed = [d for d in v.shape if d != 1]
        if squeezed != [channels] or v.shape[-1] != channels:
            raise ValueError(
                f"cannot fold the affine operations after {layer.name} into it: their constants "
                f"have shape {v.shape}, not one value per output channel ({channels}); pass "
                "canonizers=() to keep them as a separate layer"
            )
        vec = v.reshape(channels)
    shape = [1] * ndim
    shape[axis] = channels
    return vec.reshape(shape)
