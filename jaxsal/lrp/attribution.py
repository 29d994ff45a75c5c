"""LRP maps through the interpreter signature: `lrp(params, x, c, *, composite=, layer=)`.

The model runs once with every leaf layer's forward wrapped by its rule's
`jax.custom_vjp` (applied from outside with the forward rule hook of
`jaxsal.forward`); the backward pass from the starting relevance (the target
logit, other logits zero) then carries relevance down to the input, or to a
named layer (LRP_T). The backward pass is plain `jnp`, so `jax.grad` of any
function of the map with respect to the parameters is exact (second order).

The relevance at the input is always part of the backward pass: a rule's
`custom_vjp` only replaces the backward pass of a layer whose input carries a
tangent, so the layers below an LRP_T layer would otherwise be differentiated
with LRP rules in second-order use. Under `jax.jit` the unused input relevance
of LRP_T is pruned by XLA.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxsal.forward import forward, module_name, resolve_layer
from jaxsal.interpreters.base import interpreter
from jaxsal.lrp.canonizers import (
    LEAVES,
    MergeBatchNorm,
    as_canonizers,
    call_graph,
    fold_plan,
    folded_params,
)
from jaxsal.lrp.composites import Composite, LayerMapComposite, get_composite
from jaxsal.lrp.rules import attach
from jaxsal.models.layers import (
    AdaptiveAvgPool,
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Dropout,
    Flatten,
    Linear,
    MaxPool,
    ReLU,
    adaptive_avg_pool,
    avg_pool,
    channels_last,
    conv2d,
    linear,
    max_pool,
    rectifier,
)

DEFAULT_CANONIZERS = (MergeBatchNorm(),)


@dataclass(frozen=True)
class Entry:
    """How one layer call is treated: its rule, a BatchNorm folded into it, or folded away."""

    rule: object = None
    fold: str | None = None
    eps: float | None = None
    identity: bool = False
    nonneg: bool = False


def layer_plan(params, composite: Composite, canonizers: tuple) -> dict[str, Entry]:
    """{torchvision path: Entry} for every leaf layer of `params.module`."""
    return _layer_plan(call_graph(params), composite, canonizers)


@functools.lru_cache(maxsize=128)
def _layer_plan(graph, composite: Composite, canonizers: tuple) -> dict[str, Entry]:
    folds = fold_plan(graph, canonizers)
    folded_away = set(folds.values())
    bn_eps = {c.name: c.eps for c in graph}
    first_types = composite.first_types()
    first = True
    plan = {}
    for call in graph:
        if call.name in folded_away:
            plan[call.name] = Entry(identity=True)
            continue
        rule = composite.rule_for(call.kind, call.name, first)
        if first_types and issubclass(call.kind, first_types):
            first = False
        fold = folds.get(call.name)
        nonneg = bool(call.inputs) and all(i >= 0 and graph[i].nonneg_out for i in call.inputs)
        plan[call.name] = Entry(rule, fold, bn_eps.get(fold), False, nonneg)
    return plan


def _adaptive(output_size):
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if size == (1, 1):
        return lambda x: jnp.mean(x, axis=(1, 2), keepdims=True)
    return lambda x: adaptive_avg_pool(x, size)


def _flatten(x):
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def _bn_affine(x, w, b):
    y = x * channels_last(w, x.ndim)
    return y if b is None else y + channels_last(b, x.ndim)


def pure_fn(module):
    """The computation of a parameter-free layer as a pure function of its inputs."""
    if isinstance(module, ReLU):
        return rectifier(module.kind, module.beta)
    if isinstance(module, MaxPool):
        return lambda x: max_pool(x, module.kernel_size, module.stride, module.padding)
    if isinstance(module, AvgPool):
        return lambda x: avg_pool(x, module.kernel_size, module.stride, module.padding)
    if isinstance(module, AdaptiveAvgPool):
        return _adaptive(module.output_size)
    if isinstance(module, Add):
        return lambda a, b: a + b
    if isinstance(module, Concat):
        return lambda *xs: jnp.concatenate(xs, axis=-1)
    if isinstance(module, Flatten):
        return _flatten
    if isinstance(module, Dropout):
        return lambda x: x
    raise TypeError(f"no pure function for {type(module).__name__}")


def lrp_rule(params, plan: dict[str, Entry]):
    """A `jaxsal.forward` rule applying `plan` (folds and LRP rules) to each leaf layer."""

    def rule(module, args, kwargs, next_fun):
        if not isinstance(module, LEAVES):
            return None
        name = module_name(module)
        entry = plan.get(name)
        if entry is None:
            return None
        if entry.identity:
            return args[0]
        if isinstance(module, Conv | Linear):
            w = module.get_variable("params", "kernel")
            b = module.get_variable("params", "bias") if module.use_bias else None
            if entry.fold is not None:
                w, b = folded_params(params, name, entry.fold, entry.eps, w, b)
            if isinstance(module, Conv):
                fn = functools.partial(
                    conv2d, stride=module.stride, padding=module.padding, groups=module.groups
                )
            else:
                fn = linear
            if entry.rule is None:
                return fn(args[0], w, b)
            return attach(entry.rule, fn, args[:1], (w, b), nonneg=entry.nonneg)
        if entry.rule is None:
            return None
        if isinstance(module, BatchNorm):
            p = module.variables
            inv = p["params"]["scale"] * jax.lax.rsqrt(p["batch_stats"]["var"] + module.eps)
            shift = p["params"]["bias"] - p["batch_stats"]["mean"] * inv
            return attach(entry.rule, _bn_affine, args[:1], (inv, shift), nonneg=entry.nonneg)
        xs = tuple(args[0]) if isinstance(module, Concat) else tuple(args)
        return attach(entry.rule, pure_fn(module), xs, nonneg=entry.nonneg)

    return rule


def lrp_forward(params, x, *, composite, canonizers=DEFAULT_CANONIZERS, taps=(), deltas=None):
    """`jaxsal.forward.forward` with a composite's rules and the canonizers applied.

    `composite=None` applies the canonizers only (the logits must not change).
    """
    comp = LayerMapComposite() if composite is None else get_composite(composite)
    plan = layer_plan(params, comp, as_canonizers(canonizers))
    return forward(params, x, taps=taps, deltas=deltas, rule=lrp_rule(params, plan))


def canonized_logits(params, x, *, canonizers=DEFAULT_CANONIZERS) -> jax.Array:
    """The logits of the canonised model (equal to the model's, up to rounding)."""
    return lrp_forward(params, x, composite=None, canonizers=canonizers)[0]


def relevance(params, x, c, *, composite="paper", canonizers=DEFAULT_CANONIZERS, layer=None):
    """LRP relevance at the input (layer=None) or at a named layer's output.

    The starting relevance is the logit of class `c[i]` for image i (others zero).
    """
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
def _lrp(params, x, c, *, key=None, composite, layer, canonizers):
    del key
    return relevance(params, x, c, composite=composite, canonizers=canonizers, layer=layer)


def lrp(
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
      params: a `ModelParams`.
      x: NHWC batch, normalised like torchvision's inputs.
      c: class index, an int or one per image; its logit is the starting relevance.
      key: unused (the signature is shared by all interpreters).
      composite: a name, "paper" (the fooling paper's LRP-Composite),
        "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
        "epsilon_gamma_box" (Zennit's composites with its default constants), or
        a `Composite` object (e.g. `LayerMapComposite({Conv: ZPlus(), ...})`).
      layer: None for the input; a torchvision path or alias ("target") for
        the relevance at that layer's output (LRP_T; reduce it with
        `jaxsal.postprocess.lrp_t_heatmap`).
      canonizers: default folds BatchNorm into the preceding conv; `()` keeps
        BatchNorm as a layer that passes relevance (the fooling paper's code).

    Returns:
      The relevance, shape of `x` (or of the layer's output), unnormalised.

    References:
      Bach et al., PLoS ONE 2015; Montavon et al., 2019 (LRP overview);
      Heo et al., Fooling neural network interpretations via adversarial model
      manipulation, NeurIPS 2019 (LRP-Composite, LRP_T).
    """
    return _lrp(
        params,
        x,
        c,
        key=key,
        composite=get_composite(composite),
        layer=layer,
        canonizers=as_canonizers(canonizers),
    )


lrp.core = _lrp.core
