"""DenseNet121 with torchvision's topology and module paths.

torchvision concatenates a dense layer's inputs inside the layer. Here the
running concatenation is an explicit `Concat` module per layer, `catK` inside
`features.denseblockN`, holding the input of dense layer K+1 (the last one,
`catL`, is the block output). So `features.denseblock4.cat15` is the fooling
paper's DenseNet target (the 992-channel input of the last dense layer), and
a gradient taken there flows through both the last layer and the block output.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jaxsal.models.layers import (
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Flatten,
    Linear,
    MaxPool,
    ReLU,
)


class DenseLayer(nn.Module):
    growth_rate: int
    bn_size: int

    @nn.compact
    def __call__(self, x):
        x = BatchNorm(name="norm1")(x)
        x = ReLU(name="relu1")(x)
        x = Conv(self.bn_size * self.growth_rate, 1, use_bias=False, name="conv1")(x)
        x = BatchNorm(name="norm2")(x)
        x = ReLU(name="relu2")(x)
        return Conv(self.growth_rate, 3, 1, 1, use_bias=False, name="conv2")(x)


class DenseBlock(nn.Module):
    num_layers: int
    growth_rate: int
    bn_size: int

    @nn.compact
    def __call__(self, x):
        for i in range(1, self.num_layers + 1):
            new = DenseLayer(self.growth_rate, self.bn_size, name=f"denselayer{i}")(x)
            x = Concat(name=f"cat{i}")([x, new])
        return x


class Transition(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = BatchNorm(name="norm")(x)
        x = ReLU(name="relu")(x)
        x = Conv(self.features, 1, use_bias=False, name="conv")(x)
        return AvgPool(2, 2, name="pool")(x)


class DenseFeatures(nn.Module):
    block_config: tuple[int, ...]
    growth_rate: int
    num_init_features: int
    bn_size: int

    @nn.compact
    def __call__(self, x):
        x = Conv(self.num_init_features, 7, 2, 3, use_bias=False, name="conv0")(x)
        x = BatchNorm(name="norm0")(x)
        x = ReLU(name="relu0")(x)
        x = MaxPool(3, 2, 1, name="pool0")(x)
        n = self.num_init_features
        for i, layers in enumerate(self.block_config):
            x = DenseBlock(layers, self.growth_rate, self.bn_size, name=f"denseblock{i + 1}")(x)
            n += layers * self.growth_rate
            if i != len(self.block_config) - 1:
                n //= 2
                x = Transition(n, name=f"transition{i + 1}")(x)
        return BatchNorm(name="norm5")(x)


class DenseNet(nn.Module):
    """torchvision DenseNet. Input NHWC, normalised like torchvision's."""

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    num_classes: int = 1000
    in_channels: int = 3

    @nn.compact
    def __call__(self, x):
        x = DenseFeatures(
            self.block_config,
            self.growth_rate,
            self.num_init_features,
            self.bn_size,
            name="features",
        )(x)
        x = ReLU(name="relu")(x)  # torchvision's functional F.relu
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return Linear(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        nb = len(self.block_config)
        last = self.block_config[-1]
        target = f"features.denseblock{nb}.cat{last - 1}"
        aliases = {"target": target, "last_dense_input": target, "features": "features"}
        aliases.update({f"stage{i}": f"features.denseblock{i}" for i in range(1, nb + 1)})
        return aliases


DenseNet121 = functools.partial(DenseNet, 32, (6, 12, 24, 16), 64)
