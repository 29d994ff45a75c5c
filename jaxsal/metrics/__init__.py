"""Evaluation metrics of saliency maps as pure JAX functions, after Quantus 0.6.0 and Captum.

One signature style: arrays positional, options keyword-only, randomness only
from an explicit ``key``; every metric works over a batch and returns one
value per image, (N,) (curves (N, K)). ``model`` is any callable ``model(x) ->
logits (N, classes)`` on an NHWC batch, e.g. ``lambda x: jaxsal.logits(params,
x)``; ``x`` is (N, H, W, C), ``y`` the class per image (N,), ``a`` a map per
image, (N, H, W) or (N, H, W, C); metrics that explain again take
``explain(x, y, key) -> a``. Callables and options are static: close over them
to compile a metric,

    metric = jax.jit(functools.partial(jaxsal.metrics.pixel_flipping, model, features_in_step=3))
    curves = metric(x, y, a)

| topic | metrics |
|---|---|
| faithfulness | `faithfulness_correlation`, `pixel_flipping`, `region_perturbation`, `irof`, `road` |
| robustness | `max_sensitivity`, `avg_sensitivity`, `local_lipschitz_estimate`, `infidelity`, `sensitivity_max` |
| localisation | `pointing_game`, `relevance_mass_accuracy`, `relevance_rank_accuracy`, `top_k_intersection`, `attribution_localisation` (masks from `box_mask`) |
| complexity | `sparseness`, `complexity` |
| randomisation | `random_logit`, `model_parameter_randomisation` |
| axioms | `completeness`, `non_sensitivity` |

Each follows the Quantus 0.6.0 metric of the same name (Captum's for
`infidelity` and `sensitivity_max`) and its defaults; where Quantus has a slip
or a batch-dependent choice, the docstring says what differs. Maps are
normalised per image (Quantus: by the batch's maximum). Also here: `ssim`
(Wang et al.), `rankdata` and `spearman`.
"""

from jaxsal.metrics._axioms import (
    completeness,
    non_sensitivity,
)
from jaxsal.metrics._common import (
    auc,
    normalise_by_max,
)
from jaxsal.metrics._complexity import (
    complexity,
    sparseness,
)
from jaxsal.metrics._faithfulness import (
    faithfulness_correlation,
    pixel_flipping,
    region_perturbation,
)
from jaxsal.metrics._infidelity import (
    infidelity,
    sensitivity_max,
)
from jaxsal.metrics._irof import (
    irof,
)
from jaxsal.metrics._localisation import (
    attribution_localisation,
    box_coverage,
    box_mask,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from jaxsal.metrics._randomisation import (
    flat_ssim,
    model_parameter_randomisation,
    random_logit,
)
from jaxsal.metrics._rank import (
    rankdata,
    spearman,
)
from jaxsal.metrics._road import (
    noisy_linear_imputation,
    road,
)
from jaxsal.metrics._robustness import (
    avg_sensitivity,
    local_lipschitz_estimate,
    max_sensitivity,
)
from jaxsal.metrics._ssim import (
    gaussian_window,
    ssim,
    ssim_map,
)

__all__ = (
    "attribution_localisation",
    "auc",
    "avg_sensitivity",
    "box_coverage",
    "box_mask",
    "completeness",
    "complexity",
    "faithfulness_correlation",
    "flat_ssim",
    "gaussian_window",
    "infidelity",
    "irof",
    "local_lipschitz_estimate",
    "max_sensitivity",
    "model_parameter_randomisation",
    "noisy_linear_imputation",
    "non_sensitivity",
    "normalise_by_max",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "rankdata",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sensitivity_max",
    "sparseness",
    "spearman",
    "ssim",
    "ssim_map",
    "top_k_intersection",
)
