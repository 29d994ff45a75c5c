"""Trustworthy CNNs (Halliwell & Lecue): training with saliency penalties.

The loss (eq. 4-10) in `losses` (the training engine's loss signature: train
one layer with `jaxsal.train.fit(..., trainable=(layer,))`), the
transfer-learning model in `jaxsal.models.transfer` (`transfer_model`: a
backbone's features with a new 1x1 conv and classifier; `transfer_head` /
`with_head`: train those new layers alone on precomputed features), post hoc
maps and predictions in `evaluation`.
"""

from jaxsal.models.transfer import (
    TransferHead,
    TransferNet,
    transfer_features,
    transfer_head,
    transfer_model,
    with_head,
)
from jaxsal.trust.evaluation import posthoc_maps, predict_and_explain
from jaxsal.trust.losses import (
    TrustConfig,
    normalize_max,
    pixelwise_cross_entropy,
    saliency,
    terms,
    trust_loss,
    trust_terms,
)

__all__ = [
    "TransferHead",
    "TransferNet",
    "TrustConfig",
    "normalize_max",
    "posthoc_maps",
    "predict_and_explain",
    "pixelwise_cross_entropy",
    "saliency",
    "terms",
    "transfer_features",
    "transfer_head",
    "transfer_model",
    "trust_loss",
    "trust_terms",
    "with_head",
]
