"""Trustworthy CNNs (Halliwell & Lecue): training with saliency penalties.

The loss (eq. 4-10) in `losses`, frozen-layer data-parallel training and the
transfer-learning head in `training`, evaluation on data with known object
locations in `evaluation`.
"""

from jaxsal.trust.losses import (
    TrustConfig,
    box_map,
    normalize_max,
    pixelwise_cross_entropy,
    saliency,
    terms,
    trust_loss,
    trust_terms,
)
from jaxsal.trust.training import (
    TransferNet,
    device_mesh,
    fit,
    make_step,
    masked_optimizer,
    trainable_mask,
    transfer_model,
)

__all__ = [
    "TransferNet",
    "TrustConfig",
    "box_map",
    "device_mesh",
    "fit",
    "make_step",
    "masked_optimizer",
    "normalize_max",
    "pixelwise_cross_entropy",
    "saliency",
    "terms",
    "trainable_mask",
    "transfer_model",
    "trust_loss",
    "trust_terms",
]
