"""LRP maps through the interpreter signature: `attribute(params, x, c, *, composite=, layer=)`.

The model runs once through the graph evaluator with every layer that its
composite maps to a rule wrapped in that rule's `jax.custom_vjp` (and every
BatchNorm that a canonizer folds merged into the layer before it); the
backward pass from the starting relevance (the target logit, other logits
zero) then carries relevance down to the input, or to a named layer (LRP_T).
Layers are found in the traced operations (`jaxsal.graph._layers`), so the
same rules apply to jaxsal's ports, a user's Flax Linen or NNX model and a
plain function. The backward pass is plain `jnp`, so `jax.grad` of any
function of the map with respect to the parameters is exact (second order).

The relevance at the input is always part of the backward pass: a rule's
`custom_vjp` only replaces the backward pass of a layer whose input carries a
tangent, so the layers below an LRP_T layer would otherwise be differentiated
with LRP rules in second-order use. Under `jax.jit` the unused input relevance
of LRP_T is pruned by XLA.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxsal.forward import forward, resolve_layer
from jaxsal.graph import Graph, LrpPlan, analyse, unsupported
from jaxsal.interpreters.base import interpreter
from jaxsal.lrp.canonizers import MergeBatchNorm, as_canonizers, fold_plan
from jaxsal.lrp.composites import Composite, get_composite

DEFAULT_CANONIZERS = (MergeBatchNorm(),)


def lrp_plan(composite: Composite | None, canonizers: tuple, function_model: bool):
    """A function from a graph to its `LrpPlan` (rules and folds), cached per graph."""
    return functools.partial(_plan, composite=composite, canonizers=canonizers,
                             function_model=function_model)  # fmt: skip


@functools.lru_cache(maxsize=128)
def _cached_plan(graph: Graph, composite, canonizers, function_model) -> LrpPlan:
    analysis = analyse(graph, function_model)
    if composite is not None:
        unsupported(analysis, "LRP")
    folds = fold_plan(analysis, canonizers)
    folded_away = set(folds.values())
    rules = {}
    if composite is not None:
        first_types = composite.first_types()
        first = True
        for layer in analysis.layers:
            if layer.index in folded_away:
                continue
            rule = composite.rule_for(layer.cls, layer.name, first)
            if first_types and issubclass(layer.cls, first_types):
                first = False
            if rule is not None:
                rules[layer.index] = rule
    return LrpPlan(analysis, rules, folds)


def _plan(graph, *, composite, canonizers, function_model) -> LrpPlan:
    return _cached_plan(graph, composite, canonizers, function_model)


def lrp_forward(params, x, *, composite, canonizers=DEFAULT_CANONIZERS, taps=(), deltas=None):
    """The forward pass with a composite's rules and the canonizers applied.

    `composite=None` applies the canonizers only (the logits must not change).
    """
    comp = None if composite is None else get_composite(composite)
    plan = lrp_plan(comp, as_canonizers(canonizers), params.spec.kind == "function")
    return forward(params, x, taps=taps, deltas=deltas, lrp=plan)


def canonized_logits(params, x, *, canonizers=DEFAULT_CANONIZERS) -> jax.Array:
    """The logits of the canonised model (equal to the model's, up to rounding)."""
    return lrp_forward(params, x, composite=None, canonizers=canonizers)[0]


def relevance(params, x, c, *, composite="paper", canonizers=DEFAULT_CANONIZERS, layer=None):
    """LRP relevance at the input (layer=None) or at a named layer's output, unchecked.

    The starting relevance is the logit of class `c[i]` for image i (others zero).
    """
    c = jnp.broadcast_to(jnp.asarray(c), (x.shape[0],))
    names = () if layer is None else (resolve_layer(params, layer),)
    deltas = {}
    if names:  # zeros added to the layer's output: their cotangent is its relevance
        shapes = jax.eval_shape(lambda x: forward(params, x, taps=names)[1], x)
        deltas = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}

    def run(x, deltas):
        return lrp_forward(
            params, x, composite=composite, canonizers=canonizers, taps=names, deltas=deltas
        )[0]

    out, vjp = jax.vjp(run, x, deltas)
    start = jax.nn.one_hot(c, out.shape[-1], dtype=out.dtype) * out
    r_x, r_layers = vjp(start)
    return r_x if layer is None else r_layers[names[0]]


@interpreter(static=("composite", "layer", "canonizers"))
def _attribute(params, x, c, *, key=None, composite, layer, canonizers):
    del key
    return relevance(params, x, c, composite=composite, canonizers=canonizers, layer=layer)


def attribute(
    params,
    x,
    c,
    *,
    key=None,
    composite: str | Composite = "paper",
    layer: str | None = None,
    canonizers=DEFAULT_CANONIZERS,
):
    """Layer-wise relevance propagation: relevance at the input, or at a layer (LRP_T).

    Args:
      params: a `ModelParams` (jaxsal's ports, or any model from `jaxsal.wrap`
        built of convolutions, dense layers, BatchNorm, ReLU, pooling, residual
        sums and concatenations).
      x: NHWC batch, normalised as the model expects.
      c: class index, an int or one per image; its logit is the starting relevance.
      key: unused (the signature is shared by all interpreters).
      composite: a name, "paper" (the fooling paper's LRP-Composite),
        "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
        "epsilon_gamma_box" (Zennit's composites with its default constants), or
        a `Composite` object (e.g. `LayerMapComposite({Conv: ZPlus(), ...})`).
      layer: None for the input; a layer path or alias ("target") for the
        relevance at that layer's output (LRP_T; reduce it with
        `jaxsal.postprocess.lrp_t_heatmap`).
      canonizers: default folds BatchNorm into the preceding conv; `()` keeps
        BatchNorm as a layer that passes relevance (the fooling paper's code).

    Returns:
      The relevance, shape of `x` (or of the layer's output), unnormalised.

    Raises:
      jaxsal.graph.UnsupportedOperation: the model holds an operation no rule
        covers (e.g. `tanh`), named with the module it runs in.

    References:
      Bach et al., PLoS ONE 2015; Montavon et al., 2019 (LRP overview);
      Heo et al., Fooling neural network interpretations via adversarial model
      manipulation, NeurIPS 2019 (LRP-Composite, LRP_T).
    """
    return _attribute(
        params,
        x,
        c,
        key=key,
        composite=get_composite(composite),
        layer=layer,
        canonizers=as_canonizers(canonizers),
    )
