"""A small VGG-like CNN for the embedded default (CPU-sized digit scenes).

Laid out like torchvision's VGG (`features.i`, `classifier`), so every tool
that works on the torchvision ports works on it unchanged. Global average
pooling keeps it usable at any input size.
"""

from __future__ import annotations

import flax.linen as nn

from jaxsal.models.layers import AdaptiveAvgPool, Flatten, Linear
from jaxsal.models.vgg import VGGFeatures, feature_aliases


class SmallCNN(nn.Module):
    """Five 3x3 convs, three max-pools, global average pooling, one dense layer."""

    num_classes: int = 10
    in_channels: int = 1
    widths: tuple = (16, "M", 32, "M", 64, "M", 64, 64)

    @nn.compact
    def __call__(self, x):
        x = VGGFeatures(self.widths, name="features")(x)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return Linear(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        return feature_aliases(self.widths)
