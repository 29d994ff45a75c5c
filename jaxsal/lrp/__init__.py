"""Layer-wise relevance propagation in JAX: rules, composites, canonizers, `lrp`.

The layering follows Zennit: a *rule* is one layer's modified backward pass (a
`jax.custom_vjp` whose backward pass is plain `jnp`, so maps stay
differentiable), a *composite* says which rule goes on which layer, a
*canonizer* rewrites the model into an equivalent LRP-friendly form (BatchNorm
folded into the preceding conv), and `lrp` runs it all with the interpreter
signature `lrp(params, x, c, *, composite=, layer=)`.
"""

from jaxsal.lrp.attribution import DEFAULT_CANONIZERS, canonized_logits, lrp, lrp_forward
from jaxsal.lrp.canonizers import Canonizer, MergeBatchNorm, NamedMergeBatchNorm, fold_batch_norm
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
    "canonized_logits",
    "fold_batch_norm",
    "get_composite",
    "lrp",
    "lrp_forward",
    "stabilize",
]
