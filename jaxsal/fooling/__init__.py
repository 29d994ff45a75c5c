"""The fooling study (Heo et al. 2019): penalties, objective, trainer, test losses, FSR, AOPC.

`penalties` holds the fooling losses `L_F` (Location, Top-k, Center-mass,
Active) on NHWC heatmaps (N, h, w, 1); `metrics` the per-image test losses,
Spearman rank correlation and the Fooling Success Rate; `perturbation` the
region-perturbation curves and AOPC of Samek et al. (2017); `objective` the
fooling objective `CE + lambda * L_F` as a pure function of (params, original
params, batch); `trainer` the jitted, data-parallel, checkpointed fine-tuning.
"""

from jaxsal.fooling.adversarial import (
    adversarial_accuracy,
    fgsm,
    free_adversarial_training,
    make_free_step,
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
    active_test_loss,
    center_mass_score,
    fooling_success_rate,
    location_test_loss,
    topk_test_loss,
)
from jaxsal.fooling.objective import Fooling, fooling_heatmap, test_losses
from jaxsal.fooling.penalties import (
    active_penalty,
    center_mass_penalty,
    center_of_mass,
    center_shift,
    location_mask,
    location_penalty,
    topk_penalty,
)
from jaxsal.fooling.perturbation import aopc, perturbation_curve, region_relevance
from jaxsal.fooling.trainer import fine_tune, make_mesh, make_step, shard_batch
from jaxsal.metrics import rankdata, spearman

__all__ = [
    "adversarial_accuracy",
    "fgsm",
    "free_adversarial_training",
    "make_free_step",
    "pgd",
    "robust_fooling_loss",
    "aopc_curves",
    "fsr_by_method",
    "noise_robustness",
    "perturb_params",
    "test_losses_by_method",
    "transfer_matrix",
    "Fooling",
    "fine_tune",
    "fooling_heatmap",
    "make_mesh",
    "make_step",
    "shard_batch",
    "test_losses",
    "FSR_INTERVALS",
    "active_penalty",
    "active_test_loss",
    "aopc",
    "center_mass_penalty",
    "center_mass_score",
    "center_of_mass",
    "center_shift",
    "fooling_success_rate",
    "location_mask",
    "location_penalty",
    "location_test_loss",
    "perturbation_curve",
    "rankdata",
    "region_relevance",
    "spearman",
    "topk_penalty",
    "topk_test_loss",
]
