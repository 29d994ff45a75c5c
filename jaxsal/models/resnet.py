"""ResNet18/34/50 with torchvision's topology (v1.5: stride on the 3x3 conv).

Module paths follow torchvision (`layer4.1.conv2`, `layer4.1.downsample.0`).
torchvision reuses one ReLU module per block; here each use is its own module:
`relu1`, `relu2` inside the block and `relu` for the block output, and the
residual sum is the module `add`, so that taps and LRP rules can reach them.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jaxsal.models.layers import (
    AdaptiveAvgPool,
    Add,
    BatchNorm,
    Conv,
    Flatten,
    Linear,
    MaxPool,
    ReLU,
)


class Downsample(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):
        x = Conv(self.features, 1, self.stride, use_bias=False, name="0")(x)
        return BatchNorm(name="1")(x)


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    expansion = 1

    @nn.compact
    def __call__(self, x):
        identity = x
        y = Conv(self.planes, 3, self.stride, 1, use_bias=False, name="conv1")(x)
        y = BatchNorm(name="bn1")(y)
        y = ReLU(name="relu1")(y)
        y = Conv(self.planes, 3, 1, 1, use_bias=False, name="conv2")(y)
        y = BatchNorm(name="bn2")(y)
        if self.downsample:
            identity = Downsample(self.planes, self.stride, name="downsample")(x)
        y = Add(name="add")(y, identity)
        return ReLU(name="relu")(y)


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    expansion = 4

    @nn.compact
    def __call__(self, x):
        identity = x
        y = Conv(self.planes, 1, use_bias=False, name="conv1")(x)
        y = BatchNorm(name="bn1")(y)
        y = ReLU(name="relu1")(y)
        y = Conv(self.planes, 3, self.stride, 1, use_bias=False, name="conv2")(y)
        y = BatchNorm(name="bn2")(y)
        y = ReLU(name="relu2")(y)
        y = Conv(self.planes * 4, 1, use_bias=False, name="conv3")(y)
        y = BatchNorm(name="bn3")(y)
        if self.downsample:
            identity = Downsample(self.planes * 4, self.stride, name="downsample")(x)
        y = Add(name="add")(y, identity)
        return ReLU(name="relu")(y)


class ResLayer(nn.Module):
    """torchvision's `layerN` Sequential of blocks named "0", "1", ..."""

    block: type
    planes: int
    blocks: int
    stride: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.blocks):
            stride = self.stride if i == 0 else 1
            downsample = i == 0 and (
                self.stride != 1 or x.shape[-1] != self.planes * self.block.expansion
            )
            x = self.block(self.planes, stride, downsample, name=str(i))(x)
        return x


class ResNet(nn.Module):
    """torchvision ResNet. Input NHWC, normalised like torchvision's."""

    block: type
    layers: tuple[int, int, int, int]
    num_classes: int = 1000
    in_channels: int = 3

    @nn.compact
    def __call__(self, x):
        x = Conv(64, 7, 2, 3, use_bias=False, name="conv1")(x)
        x = BatchNorm(name="bn1")(x)
        x = ReLU(name="relu")(x)
        x = MaxPool(3, 2, 1, name="maxpool")(x)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), self.layers)):
            stride = 1 if i == 0 else 2
            x = ResLayer(self.block, planes, n, stride, name=f"layer{i + 1}")(x)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return Linear(self.num_classes, name="fc")(x)

    def layer_aliases(self) -> dict[str, str]:
        last = self.layers[3] - 1
        target = f"layer4.{last - 1}"  # input of the last block
        aliases = {"target": target, "last_block_input": target, "features": "layer4"}
        aliases.update({f"stage{i}": f"layer{i}" for i in range(1, 5)})
        return aliases


ResNet18 = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, BasicBlock, (3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3))
