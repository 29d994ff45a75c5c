"""MobileNetV2 with torchvision's topology and module paths (ReLU6 activations)."""

from __future__ import annotations

import flax.linen as nn

from jaxsal.models.layers import (
    AdaptiveAvgPool,
    Add,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Linear,
    ReLU6,
)

# expansion t, channels c, repeats n, first stride s (torchvision's table)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


class ConvBNReLU(nn.Module):
    """torchvision's Conv2dNormActivation: children "0" conv, "1" bn, "2" relu6."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    groups: int = 1

    @nn.compact
    def __call__(self, x):
        pad = (self.kernel_size - 1) // 2
        x = Conv(self.features, self.kernel_size, self.stride, pad, self.groups, False, name="0")(x)
        x = BatchNorm(name="1")(x)
        return ReLU6(name="2")(x)


class InvertedResidualConv(nn.Module):
    """The `conv` Sequential of torchvision's InvertedResidual."""

    hidden: int
    out: int
    stride: int
    expand: bool

    @nn.compact
    def __call__(self, x):
        i = 0
        if self.expand:
            x = ConvBNReLU(self.hidden, 1, name="0")(x)
            i = 1
        x = ConvBNReLU(self.hidden, 3, self.stride, self.hidden, name=str(i))(x)
        x = Conv(self.out, 1, use_bias=False, name=str(i + 1))(x)
        return BatchNorm(name=str(i + 2))(x)


class InvertedResidual(nn.Module):
    out: int
    stride: int
    expand_ratio: int

    @nn.compact
    def __call__(self, x):
        inp = x.shape[-1]
        hidden = int(round(inp * self.expand_ratio))
        y = InvertedResidualConv(
            hidden, self.out, self.stride, self.expand_ratio != 1, name="conv"
        )(x)
        if self.stride == 1 and inp == self.out:
            y = Add(name="add")(x, y)
        return y


class MobileNetFeatures(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = ConvBNReLU(32, 3, 2, name="0")(x)
        i = 1
        for t, c, n, s in SETTINGS:
            for j in range(n):
                x = InvertedResidual(c, s if j == 0 else 1, t, name=str(i))(x)
                i += 1
        return ConvBNReLU(1280, 1, name=str(i))(x)


class MobileNetClassifier(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = Dropout(name="0")(x)
        return Linear(self.num_classes, name="1")(x)


class MobileNetV2(nn.Module):
    """torchvision MobileNetV2 (width 1.0). Input NHWC, normalised like torchvision's."""

    num_classes: int = 1000
    in_channels: int = 3

    @nn.compact
    def __call__(self, x):
        x = MobileNetFeatures(name="features")(x)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return MobileNetClassifier(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        # By the paper's convention (input of the last conv block): features.17.
        return {"target": "features.17", "last_block_input": "features.17",
                "features": "features.18", "last_conv": "features.18"}  # fmt: skip
