"""Layer-wise relevance propagation in JAX: rules, composites, canonizers, `lrp`.

The layering follows Zennit: a *rule* is one layer's modified backward pass (a
`jax.custom_vjp` whose backward pass is plain `jnp`, so maps stay
differentiable), a *composite* says which rule goes on which layer, a
*canonizer* rewrites the model into an equivalent LRP-friendly form (BatchNorm
folded into the preceding conv), and `attribute` runs it all with the
interpreter signature `jaxsal.lrp.attribute(params, x, c, *, composite=, layer=)`.
Rules attach to the layers found in any model's traced operations, so LRP
works on jaxsal's ports, a user's Flax Linen or NNX model and plain functions.
"""

from jaxsal.lrp.attribution import (
    DEFAULT_CANONIZERS,
    attribute,
    canonized_logits,
    lrp_forward,
    relevance,
)
from jaxsal.lrp.canonizers import Canonizer, MergeBatchNorm, NamedMergeBatchNorm
from jaxsal.lrp.composites import (
    COMPOSITES,
    Composite,
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    PaperComposite,
    get_composite,
)
from jaxsal.lrp.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    NormPlus,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
    stabilize,
)

__all__ = [
    "COMPOSITES",
    "DEFAULT_CANONIZERS",
    "AlphaBeta",
    "Canonizer",
    "Composite",
    "Epsilon",
    "EpsilonAlpha2Beta1",
    "EpsilonGammaBox",
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "Flat",
    "Gamma",
    "LayerMapComposite",
    "MergeBatchNorm",
    "NamedMergeBatchNorm",
    "Norm",
    "NormPlus",
    "PaperComposite",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "attribute",
    "canonized_logits",
    "get_composite",
    "lrp_forward",
    "relevance",
    "stabilize",
]
