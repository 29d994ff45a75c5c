"""Composites: which LRP rule goes on which layer, by layer type or torchvision path.

A composite is a frozen dataclass (hashable: a static argument of `jax.jit`).
`rule_for(kind, name, first)` answers with a rule, or None for the layer's
ordinary gradient (max pooling's winner-takes-all, concatenation's split by
channel, flatten). Precedence, as in Zennit: the name map, then the first-layer
map (for the first layer, in execution order, of a matching type), then the
layer map. Layers are the ones the graph analysis finds in any model
(`jaxsal.graph._layers`); their classes are jaxsal's layer classes, with
Flax's `nn.Conv`, `nn.Dense`, `nn.BatchNorm` (and NNX's) accepted as keys.

Built-in composites take their constants as fields and, like Zennit's, a
`layer_map` of extra (layer types, rule) pairs tried before their own. They
mirror Zennit 0.5.1 (`zennit/composites.py`, with `layer_map_base`: rectifiers and BatchNorm pass
relevance through, sums and average pooling take `Norm`); `PaperComposite` is
the LRP-Composite of the fooling paper (SPEC section 1).

References:
  Kohlbrenner et al., Towards best practice in explaining neural network
  decisions with LRP, IJCNN 2020.
  Heo, Joo and Moon, Fooling neural network interpretations via adversarial
  model manipulation, NeurIPS 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxsal.graph._kinds import normalize_key
from jaxsal.lrp.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    NormPlus,
    Pass,
    Rule,
    ZBox,
    ZPlus,
)
from jaxsal.models.layers import (
    AdaptiveAvgPool,
    Add,
    AvgPool,
    BatchNorm,
    Conv,
    Linear,
    ReLU,
)

# Layer-type groups, as Zennit's `zennit.types`.
Convolution = (Conv,)
Dense = (Linear,)
AnyLinear = (Conv, Linear)
Activation = (ReLU,)  # ReLU6 is a subclass
AvgPooling = (AvgPool, AdaptiveAvgPool)
Sum = (Add,)
BatchNormalization = (BatchNorm,)


def _entries(mapping, *, classes: bool) -> tuple:
    """A dict or a sequence of (key, rule) pairs as a hashable tuple of pairs.

    With `classes`, keys are layer classes (Flax's stand for jaxsal's); else names.
    """
    items = mapping.items() if isinstance(mapping, dict) else mapping
    out = []
    for key, rule in items:
        key = tuple(key) if isinstance(key, list | tuple) else (key,)
        if classes:
            key = tuple(normalize_key(k) for k in key)
        if not isinstance(rule, Rule):
            raise TypeError(f"a composite maps layers to Rule instances, got {rule!r} for {key}")
        out.append((key, rule))
    return tuple(out)


def _match(entries, kind: type):
    return next((rule for types, rule in entries if issubclass(kind, types)), None)


class Composite:
    """Base class. Subclasses define `maps()` -> (name_map, first_map, layer_map).

    Fields named `layer_map`, `name_map` or `first_map` may be given as dicts or
    lists of pairs; they are stored as tuples so that the composite stays hashable.
    """

    def __post_init__(self):
        for f in ("layer_map", "name_map", "first_map"):
            if hasattr(self, f):
                entries = _entries(getattr(self, f), classes=f != "name_map")
                object.__setattr__(self, f, entries)

    def maps(self) -> tuple[tuple, tuple, tuple]:
        raise NotImplementedError

    def rule_for(self, kind: type, name: str, first: bool) -> Rule | None:
        """The rule for a layer of class `kind` at torchvision path `name`.

        Args:
          kind: the layer's class (e.g. `jaxsal.models.layers.Conv`).
          name: its module path, e.g. "features.0".
          first: no layer has matched the first-layer map yet.
        """
        name_map, first_map, layer_map = self.maps()
        for names, rule in name_map:
            if name in names:
                return rule
        if first:
            rule = _match(first_map, kind)
            if rule is not None:
                return rule
        return _match(layer_map, kind)

    def first_types(self) -> tuple:
        """The layer classes of the first-layer map (its first match ends it)."""
        return tuple(t for types, _ in self.maps()[1] for t in types)


def layer_map_base(stabilizer: float = 1e-6) -> tuple:
    """Zennit's base map: rectifiers and BatchNorm pass, sums and average pooling take Norm."""
    return (
        (Activation, Pass()),
        (Sum, Norm(stabilizer)),
        (AvgPooling, Norm(stabilizer)),
        (BatchNormalization, Pass()),
    )


@dataclass(frozen=True)
class LayerMapComposite(Composite):
    """A user-defined composite.

    Args:
      layer_map: pairs (layer class or tuple of classes, rule), or a dict;
        first match wins. Layers that match nothing keep their gradient.
      name_map: pairs (torchvision path or tuple of paths, rule), or a dict.
      first_map: like layer_map, for the first matching layer only.

    Example:
      `LayerMapComposite(layer_map={Conv: ZPlus(), Linear: Epsilon(0.25),
      ReLU: Pass()}, name_map={"features.0": Flat()})`.
    """

    layer_map: tuple = ()
    name_map: tuple = ()
    first_map: tuple = ()

    def maps(self):
        return self.name_map, self.first_map, self.layer_map


@dataclass(frozen=True)
class EpsilonPlus(Composite):
    """z-plus on conv layers, epsilon on dense layers (Zennit's `EpsilonPlus`)."""

    epsilon: float = 1e-6
    stabilizer: float = 1e-6
    layer_map: tuple = ()

    def maps(self):
        rules = ((Convolution, ZPlus(self.stabilizer)), (Dense, Epsilon(self.epsilon)))
        return (), (), self.layer_map + layer_map_base(self.stabilizer) + rules


@dataclass(frozen=True)
class EpsilonPlusFlat(EpsilonPlus):
    """`EpsilonPlus` with the flat rule on the first conv/dense layer (Zennit's)."""

    def maps(self):
        names, _, layers = super().maps()
        return names, ((AnyLinear, Flat(self.stabilizer)),), layers


@dataclass(frozen=True)
class EpsilonAlpha2Beta1(Composite):
    """alpha2-beta1 on conv layers, epsilon on dense layers (Zennit's)."""

    epsilon: float = 1e-6
    stabilizer: float = 1e-6
    layer_map: tuple = ()

    def maps(self):
        rules = (
            (Convolution, AlphaBeta(2.0, 1.0, self.stabilizer)),
            (Dense, Epsilon(self.epsilon)),
        )
        return (), (), self.layer_map + layer_map_base(self.stabilizer) + rules


@dataclass(frozen=True)
class EpsilonGammaBox(Composite):
    """z-box on the first conv, gamma on other convs, epsilon on dense layers (Zennit's).

    Args:
      low, high: input bounds of the z-box rule (float or one per channel);
        None: the ImageNet pixel range [0, 1] after torchvision's normalisation.
    """

    low: float | tuple[float, ...] | None = None
    high: float | tuple[float, ...] | None = None
    epsilon: float = 1e-6
    gamma: float = 0.25
    stabilizer: float = 1e-6
    layer_map: tuple = ()

    def maps(self):
        rules = (
            (Convolution, Gamma(self.gamma, self.stabilizer)),
            (Dense, Epsilon(self.epsilon)),
        )
        first = ((Convolution, ZBox(self.low, self.high, self.stabilizer)),)
        return (), first, self.layer_map + layer_map_base(self.stabilizer) + rules


@dataclass(frozen=True)
class PaperComposite(Composite):
    """The LRP-Composite of the fooling paper (Heo et al. 2019; SPEC section 1).

    Dense layers: epsilon 0.01, bias in z. Conv layers: alpha1-beta0 with the
    raw bias in `z = fn(x+, w+) + fn(x-, w-) + b` and stabiliser 0.01.
    Rectifiers and BatchNorm pass relevance; max pooling is winner-takes-all
    (its gradient); average pooling (global too) shares in proportion to x+
    (eps 1e-8); residual sums in proportion to the inputs' positive parts (eps
    1e-12, the authors' code); concatenation splits by channel.
    """

    epsilon: float = 0.01
    stabilizer: float = 0.01
    pool_stabilizer: float = 1e-8
    sum_stabilizer: float = 1e-12

    def maps(self):
        return (), (), (
            (Activation, Pass()),
            (BatchNormalization, Pass()),
            (AvgPooling, NormPlus(self.pool_stabilizer)),
            (Sum, NormPlus(self.sum_stabilizer)),
            (Convolution, AlphaBeta(1.0, 0.0, self.stabilizer, bias="whole")),
            (Dense, Epsilon(self.epsilon)),
        )  # fmt: skip


COMPOSITES = {
    "paper": PaperComposite,
    "epsilon_plus": EpsilonPlus,
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
    "epsilon_gamma_box": EpsilonGammaBox,
}


def get_composite(composite: str | Composite) -> Composite:
    """A composite object from its name (Zennit's default constants) or as given."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str) and composite in COMPOSITES:
        return COMPOSITES[composite]()
    raise ValueError(
        f"unknown composite {composite!r}; use one of {', '.join(COMPOSITES)} or a Composite "
        "object such as LayerMapComposite(layer_map={Conv: ZPlus(), Linear: Epsilon()})"
    )
