"""Sanity checks for saliency maps (Adebayo et al.) and input manipulation (Dombrowski et al.).

- `randomization`: cascading and independent model randomisation, batched and
  jitted for any model and interpreter; shuffled labels for data randomisation.
- `similarity`: Spearman of absolute and signed maps, SSIM, Spearman of HOG descriptors,
  over the whole image or inside each image's ground-truth box.
- `manipulation`: the input-manipulation attack on explanations and its
  beta-smoothing defence.
"""

from jaxsal.sanity.manipulation import (
    AttackConfig,
    explanation_map,
    manipulate,
    manipulation_scores,
)
from jaxsal.sanity.randomization import (
    cascading_masks,
    fresh_params,
    independent_masks,
    mix,
    parameter_layers,
    randomize_layers,
    randomized_maps,
    shuffled_labels,
)
from jaxsal.sanity.similarity import (
    METRICS,
    hog,
    hog_box_mask,
    hog_cells,
    hog_spearman,
    masked_spearman,
    masked_ssim,
    similarities,
    spearman_abs,
    spearman_signed,
    ssim_abs,
)

__all__ = [
    "METRICS",
    "AttackConfig",
    "cascading_masks",
    "explanation_map",
    "fresh_params",
    "hog",
    "hog_box_mask",
    "hog_cells",
    "hog_spearman",
    "independent_masks",
    "manipulate",
    "manipulation_scores",
    "masked_spearman",
    "masked_ssim",
    "mix",
    "parameter_layers",
    "randomize_layers",
    "randomized_maps",
    "shuffled_labels",
    "similarities",
    "spearman_abs",
    "spearman_signed",
    "ssim_abs",
]
