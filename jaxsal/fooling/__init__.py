"""The fooling study (Heo et al. 2019): penalties, objective, trainer, test losses, FSR, AOPC.

`penalties` holds the fooling losses `L_F` (Location, Top-k, Center-mass,
Active) on NHWC heatmaps (N, h, w, 1); `metrics` the per-image test losses
and the Fooling Success Rate; `perturbation` the region-perturbation curves
and AOPC of Samek et al. (2017); `objective` the fooling objective
`CE + lambda * L_F` with the training engine's loss signature
`(params, batch, params0)` (fine-tune it with `jaxsal.train.fit`);
`adversarial` free adversarial training and attacks; `analysis` the
transfer matrix, AOPC curves and weight noise.
"""

from jaxsal.fooling.adversarial import (
    adversarial_accuracy,
    fgsm,
    free_adversarial_loss,
    free_adversarial_training,
    free_optimizer,
    pgd,
    robust_fooling_loss,
)
from jaxsal.fooling.analysis import (
    aopc_curves,
    fsr_by_method,
    noise_robustness,
    perturb_params,
    test_losses_by_method,
    transfer_matrix,
)
from jaxsal.fooling.metrics import (
    FSR_INTERVALS,
    active_swap_score,
    active_test_loss,
    center_mass_score,
    fooling_success_rate,
    location_test_loss,
    mass_in_boxes,
    topk_test_loss,
)
from jaxsal.fooling.objective import (
    Fooling,
    heatmap_of,
    loss,
    losses_from_maps,
    penalty,
    test_losses,
)
from jaxsal.fooling.penalties import (
    active_penalty,
    center_mass_penalty,
    center_of_mass,
    center_shift,
    location_mask,
    location_penalty,
    logit_floor_penalty,
    topk_penalty,
)
from jaxsal.fooling.perturbation import aopc, perturbation_curve, region_relevance

__all__ = [
    "adversarial_accuracy",
    "fgsm",
    "free_adversarial_training",
    "free_adversarial_loss",
    "free_optimizer",
    "pgd",
    "robust_fooling_loss",
    "aopc_curves",
    "fsr_by_method",
    "noise_robustness",
    "perturb_params",
    "test_losses_by_method",
    "transfer_matrix",
    "Fooling",
    "heatmap_of",
    "loss",
    "losses_from_maps",
    "penalty",
    "test_losses",
    "FSR_INTERVALS",
    "active_penalty",
    "active_swap_score",
    "active_test_loss",
    "aopc",
    "center_mass_penalty",
    "center_mass_score",
    "center_of_mass",
    "center_shift",
    "fooling_success_rate",
    "location_mask",
    "location_penalty",
    "logit_floor_penalty",
    "location_test_loss",
    "mass_in_boxes",
    "perturbation_curve",
    "region_relevance",
    "topk_penalty",
    "topk_test_loss",
]
