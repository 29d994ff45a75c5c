"""Canonizers: rewrite a model into an equivalent form that LRP rules suit better.

`MergeBatchNorm` folds every BatchNorm (an affine layer, see
`jaxsal.graph._layers`) whose input is the output of a conv or dense layer
read by it alone into that layer: the layer gets `w' = w * s` and
`b' = (b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`, computed
inside the traced function from the parameters, and the BatchNorm becomes the
identity (Zennit's `MergeBatchNorm` arithmetic). Nothing in the parameter tree
changes, so the fold is differentiable and an LRP map of the canonised model
has gradients with respect to the original BatchNorm parameters.

Which BatchNorm follows which layer is read from the data flow of the traced
graph, not from the order of declaration, so it is right for every model: all
BatchNorms of ResNet and MobileNetV2; `norm0` and each dense layer's `norm2`
in DenseNet, whose pre-activation BatchNorms (`norm1`, the transitions'
`norm`, `norm5`) follow a concatenation or a pooling and keep the composite's
BatchNorm rule (pass-through in every built-in composite); `nn.BatchNorm`
after `nn.Conv` in a user's Flax model. Residual sums need no canonizer:
they are operations of their own in the graph.

Reference:
  Zennit 0.5.1, `zennit/canonizers.py` and `zennit/torchvision.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxsal.graph import Analysis


class Canonizer:
    """Base class: `folds(analysis)` returns {conv / dense layer index: affine layer index}."""

    def folds(self, analysis: Analysis) -> dict[int, int]:
        raise NotImplementedError


def _source(analysis: Analysis, layer) -> int | None:
    """The layer producing the single input of `layer`, or None."""
    if len(layer.ins) != 1:
        return None
    return analysis.producer.get(analysis.resolve(layer.ins[0]))


@dataclass(frozen=True)
class MergeBatchNorm(Canonizer):
    """Folds each BatchNorm whose input is the output of a conv / dense layer read by it alone."""

    def folds(self, analysis):
        out = {}
        for layer in analysis.layers:
            if layer.kind != "affine":
                continue
            src = _source(analysis, layer)
            if src is None:
                continue
            linear = analysis.layers[src]
            if linear.kind in ("conv", "dense") and analysis.consumers.get(linear.out) == 1:
                out[linear.index] = layer.index
        return out


@dataclass(frozen=True)
class NamedMergeBatchNorm(Canonizer):
    """Folds the given (conv layer name, BatchNorm layer name) pairs, e.g. for a custom model."""

    pairs: tuple[tuple[str, str], ...] = ()

    def folds(self, analysis):
        by_name = {layer.name: layer for layer in analysis.layers}
        missing = [n for pair in self.pairs for n in pair if n not in by_name]
        if missing:
            raise ValueError(
                f"NamedMergeBatchNorm: layers not in the model: {', '.join(missing)}; known "
                f"layers: {', '.join(by_name)}"
            )
        out = {}
        for conv, bn in self.pairs:
            a, b = by_name[conv], by_name[bn]
            if a.kind not in ("conv", "dense") or b.kind != "affine":
                raise ValueError(
                    f"NamedMergeBatchNorm: {conv} is a {a.kind} layer and {bn} a {b.kind} "
                    "layer; it folds an affine (BatchNorm) layer into a conv or dense layer"
                )
            if _source(analysis, b) != a.index or analysis.consumers.get(a.out) != 1:
                raise ValueError(
                    f"NamedMergeBatchNorm: {bn} does not read the output of {conv} alone"
                )
            out[a.index] = b.index
        return out


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


def fold_plan(analysis: Analysis, canonizers: tuple[Canonizer, ...]) -> dict[int, int]:
    """{conv / dense layer index: BatchNorm layer index} for all canonizers together."""
    plan: dict[int, int] = {}
    for canonizer in canonizers:
        plan.update(canonizer.folds(analysis))
    return plan
