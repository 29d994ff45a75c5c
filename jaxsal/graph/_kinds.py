"""Layer classes that composites map to rules, and the Flax classes that stand for them.

A layer found in a graph (`jaxsal.graph.analyse`) has a kind ("conv",
"dense", "affine", ...). Composites name layers by class, as Zennit does
with torch modules: `jaxsal.models.layers.Conv` means every convolution,
whether it comes from jaxsal's `Conv`, Flax's `nn.Conv` / `nnx.Conv` or a
`jax.lax.conv_general_dilated` call in a plain function. Flax's classes are
accepted as synonyms of jaxsal's.
"""

from __future__ import annotations

import functools

from jaxsal.models import layers as L

KIND_CLASS = {
    "conv": L.Conv,
    "dense": L.Linear,
    "affine": L.BatchNorm,
    "relu": L.ReLU,
    "relu6": L.ReLU6,
    "max_pool": L.MaxPool,
    "avg_pool": L.AvgPool,
    "sum": L.Add,
    "concat": L.Concat,
    "move": L.Flatten,
}
# jaxsal's own layer classes and the layer kinds their calls can have.
_OWN = {
    L.Conv: {"conv"},
    L.Linear: {"dense"},
    L.BatchNorm: {"affine"},
    L.ReLU: {"relu"},
    L.ReLU6: {"relu6"},
    L.MaxPool: {"max_pool"},
    L.AvgPool: {"avg_pool"},
    L.AdaptiveAvgPool: {"avg_pool", "move"},
    L.Add: {"sum"},
    L.Concat: {"concat"},
    L.Flatten: {"move"},
    L.Dropout: {"move"},
}


@functools.cache
def _synonyms() -> dict[type, type]:
    import flax.linen as nn
    from flax import nnx

    return {
        nn.Conv: L.Conv,
        nn.Dense: L.Linear,
        nn.BatchNorm: L.BatchNorm,
        nn.Dropout: L.Dropout,
        nnx.Conv: L.Conv,
        nnx.Linear: L.Linear,
        nnx.BatchNorm: L.BatchNorm,
        nnx.Dropout: L.Dropout,
    }


def own_class(cls: type) -> type | None:
    """jaxsal's layer class for `cls` (itself, or the class a Flax layer stands for)."""
    if cls in _OWN:
        return cls
    for other, own in _synonyms().items():
        if issubclass(cls, other):
            return own
    for own in _OWN:
        if issubclass(cls, own):
            return cls
    return None


def layer_class(kind: str, module_cls: type | None) -> type:
    """The class a layer of `kind` is matched by; its leaf module's own class when that fits."""
    if module_cls is not None:
        own = own_class(module_cls)
        if own is not None and kind in _OWN.get(own, _OWN.get(_base(own), set())):
            return own
    return KIND_CLASS[kind]


def _base(cls: type) -> type | None:
    return next((b for b in _OWN if issubclass(cls, b)), None)


def normalize_key(cls) -> type:
    """A composite key: jaxsal's layer class, or a Flax class standing for one."""
    if isinstance(cls, type):
        own = own_class(cls)
        if own is not None:
            return own
    known = ", ".join(c.__name__ for c in _OWN)
    raise TypeError(
        f"composites map layer classes to rules; {cls!r} is not one. Use jaxsal.models.layers "
        f"classes ({known}) or Flax's nn.Conv, nn.Dense, nn.BatchNorm (and NNX's)"
    )
