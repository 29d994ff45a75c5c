"""A small VGG-like CNN for the embedded default (CPU-sized digit scenes).

Laid out like torchvision's VGG (`features.i`, `classifier`), so every tool
that works on the torchvision ports works on it unchanged. Global average
pooling keeps it usable at any input size.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jaxsal.models.layers import AdaptiveAvgPool, Flatten, Linear
from jaxsal.models.vgg import VGGFeatures, feature_aliases


class SmallCNN(nn.Module):
    """Five 3x3 convs (each with BatchNorm when `batch_norm`), three max-pools, global average
    pooling, one dense layer."""

    num_classes: int = 10
    in_channels: int = 1
    widths: tuple = (16, "M", 32, "M", 64, "M", 64, 64)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x):
        x = VGGFeatures(self.widths, self.batch_norm, name="features")(x)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return Linear(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        return feature_aliases(self.widths, self.batch_norm)


SmallCNNBN = functools.partial(SmallCNN, batch_norm=True)
