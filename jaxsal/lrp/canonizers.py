"""Canonizers: rewrite a model into an equivalent form that LRP rules suit better.

`MergeBatchNorm` folds every BatchNorm that directly follows a conv (or dense)
layer into that layer: the conv gets `w' = w * s`, `b' = (b - mean) * s + beta`
with `s = gamma / sqrt(var + eps)`, and the BatchNorm becomes the identity
(Zennit's `MergeBatchNorm` arithmetic). Nothing in the parameter tree changes:
the fold is computed from the parameters inside the traced function, so it is
differentiable and an LRP map of the canonised model has gradients with
respect to the original BatchNorm parameters.

Which BatchNorm follows which conv is read from the data flow of the model
(`call_graph`), not from the order of declaration, so it is right for all the
ports: every BatchNorm of ResNet and MobileNetV2; `norm0` and each dense
layer's `norm2` in DenseNet. DenseNet's pre-activation BatchNorms (`norm1`,
the transitions' `norm`, `norm5`) follow a concatenation or a pooling, not a
conv, so they cannot be folded; they keep the composite's BatchNorm rule
(pass-through in every built-in composite). Residual sums are explicit `Add`
modules in the ports already (Zennit's ResNet canonizer adds such a module).

Reference:
  Zennit 0.5.1, `zennit/canonizers.py` and `zennit/torchvision.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
from jax import lax

from jaxsal.forward import module_name
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
    channels_last,
)
from jaxsal.params import default_input_shape

LEAVES = (Conv, Linear, BatchNorm, ReLU, MaxPool, AvgPool, AdaptiveAvgPool, Add, Concat, Flatten,
          Dropout)  # fmt: skip
# Layers whose output is non-negative when all their inputs are.
_KEEPS_SIGN = (MaxPool, AvgPool, AdaptiveAvgPool, Add, Concat, Flatten, Dropout)


class Call(NamedTuple):
    """One call of a leaf layer, in execution order.

    Attributes:
      name: torchvision path.
      kind: the layer's class.
      inputs: indices of the calls that produced the inputs (-1: the model input).
      nonneg_out: the output is non-negative for every input (a rectifier's).
      eps: BatchNorm's epsilon (None for other layers).
    """

    name: str
    kind: type
    inputs: tuple[int, ...]
    nonneg_out: bool
    eps: float | None


_GRAPHS: dict = {}


def call_graph(params) -> tuple[Call, ...]:
    """The leaf layer calls of `params.module`, with their data flow.

    Traced once per architecture, abstractly (shapes only), and cached.
    """
    module = params.module
    if module not in _GRAPHS:
        _GRAPHS[module] = _trace_graph(module, params.variables)
    return _GRAPHS[module]


def _trace_graph(module: nn.Module, variables) -> tuple[Call, ...]:
    calls: list[Call] = []
    producer: dict[int, int] = {}
    keep_alive: list = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name != "__call__" or not isinstance(mod, LEAVES):
            return out
        arrays = jax.tree.leaves((args, kwargs))
        inputs = tuple(producer.get(id(a), -1) for a in arrays)
        nonneg = isinstance(mod, ReLU) or (
            isinstance(mod, _KEEPS_SIGN) and all(i >= 0 and calls[i].nonneg_out for i in inputs)
        )
        eps = mod.eps if isinstance(mod, BatchNorm) else None
        calls.append(Call(module_name(mod), type(mod), inputs, nonneg, eps))
        producer[id(out)] = len(calls) - 1
        keep_alive.append(out)  # ids stay unique while the trace lives
        return out

    def run(variables, x):
        with nn.intercept_methods(record):
            return module.apply(variables, x)

    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), variables)
    dtype = jax.tree.leaves(abstract)[0].dtype
    x = jax.ShapeDtypeStruct(default_input_shape(module, 64), dtype)
    jax.eval_shape(run, abstract, x)
    return tuple(calls)


def consumers(graph: tuple[Call, ...]) -> dict[int, int]:
    """How many layer calls read each call's output."""
    count: dict[int, int] = {}
    for call in graph:
        for i in call.inputs:
            count[i] = count.get(i, 0) + 1
    return count


class Canonizer:
    """Base class: `folds(graph)` returns {conv path: BatchNorm path} to merge."""

    def folds(self, graph: tuple[Call, ...]) -> dict[str, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class MergeBatchNorm(Canonizer):
    """Folds each BatchNorm whose input is the output of a conv/dense layer read by it alone."""

    def folds(self, graph):
        used = consumers(graph)
        out = {}
        for call in graph:
            if call.kind is not BatchNorm or len(call.inputs) != 1:
                continue
            src = call.inputs[0]
            if src >= 0 and issubclass(graph[src].kind, (Conv, Linear)) and used[src] == 1:
                out[graph[src].name] = call.name
        return out


@dataclass(frozen=True)
class NamedMergeBatchNorm(Canonizer):
    """Folds the given (conv path, BatchNorm path) pairs, e.g. for a custom model."""

    pairs: tuple[tuple[str, str], ...] = ()

    def folds(self, graph):
        names = {c.name for c in graph}
        missing = [n for pair in self.pairs for n in pair if n not in names]
        if missing:
            raise ValueError(f"NamedMergeBatchNorm: layers not in the model: {', '.join(missing)}")
        return dict(self.pairs)


def as_canonizers(canonizers) -> tuple[Canonizer, ...]:
    if canonizers is None:
        return ()
    if isinstance(canonizers, Canonizer):
        return (canonizers,)
    canonizers = tuple(canonizers)
    bad = [c for c in canonizers if not isinstance(c, Canonizer)]
    if bad:
        raise TypeError(
            f"canonizers must be Canonizer instances (e.g. MergeBatchNorm()), got {bad[0]!r}; "
            "pass canonizers=() for none (the fooling paper's behaviour)"
        )
    return canonizers


def fold_plan(graph: tuple[Call, ...], canonizers: tuple[Canonizer, ...]) -> dict[str, str]:
    """{conv path: BatchNorm path} for all canonizers together."""
    plan: dict[str, str] = {}
    for canonizer in canonizers:
        plan.update(canonizer.folds(graph))
    return plan


def _subtree(tree, name: str):
    for part in name.split("."):
        tree = tree[part]
    return tree


def fold_batch_norm(kernel, bias, scale, shift, mean, var, eps):
    """The conv/dense layer followed by BatchNorm as one layer: (kernel', bias').

    The kernel's last axis is the output channel (HWIO or (in, out)).
    """
    inv = scale * lax.rsqrt(var + eps)
    b = -mean if bias is None else bias - mean
    return kernel * channels_last(inv, kernel.ndim), b * inv + shift


def folded_params(params, conv: str, bn: str, eps: float, kernel, bias):
    """Kernel and bias of `conv` with the BatchNorm `bn` folded in (from a ModelParams)."""
    p = _subtree(params.params, bn)
    s = _subtree(params.state["batch_stats"], bn)
    return fold_batch_norm(kernel, bias, p["scale"], p["bias"], s["mean"], s["var"], eps)
