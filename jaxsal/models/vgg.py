"""VGG16 and VGG19 with torchvision's topology and module paths.

`features.i` and `classifier.i` are the indices of torchvision's Sequential
containers, so `features.33` is relu(conv5_3) of VGG19, the fooling paper's
target layer (the input of the last conv).
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jaxsal.models.layers import (
    AdaptiveAvgPool,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Linear,
    MaxPool,
    ReLU,
)

CFGS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}  # fmt: skip


def conv_indices(cfg, batch_norm: bool = False):
    """torchvision Sequential index of each conv; its ReLU follows (after a BatchNorm, if any)."""
    convs, i = [], 0
    for v in cfg:
        if v == "M":
            i += 1
        else:
            convs.append(i)
            i += 3 if batch_norm else 2
    return convs


def feature_aliases(cfg, batch_norm: bool = False) -> dict[str, str]:
    """Aliases of a VGG-style `features` stack; `target` is the input of the last conv."""
    convs = conv_indices(cfg, batch_norm)
    if not convs:
        return {"features": "features"}
    relu = 2 if batch_norm else 1
    aliases = {"last_conv": f"features.{convs[-1] + relu}", "features": "features"}
    if len(convs) > 1:  # the relu before the last conv; a one-conv net has only its output
        aliases["last_conv_input"] = f"features.{convs[-2] + relu}"
    aliases["target"] = aliases.get("last_conv_input", aliases["last_conv"])
    return aliases


class VGGFeatures(nn.Module):
    """torchvision's `features`: conv (BatchNorm) ReLU per entry, max pooling for "M"."""

    cfg: tuple
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x):
        i = 0
        for v in self.cfg:
            if v == "M":
                x = MaxPool(2, 2, name=str(i))(x)
                i += 1
                continue
            x = Conv(v, 3, padding=1, name=str(i))(x)
            if self.batch_norm:
                x = BatchNorm(name=str(i + 1))(x)
                i += 1
            x = ReLU(name=str(i + 1))(x)
            i += 2
        return x


class VGGClassifier(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = Linear(4096, name="0")(x)
        x = ReLU(name="1")(x)
        x = Dropout(name="2")(x)
        x = Linear(4096, name="3")(x)
        x = ReLU(name="4")(x)
        x = Dropout(name="5")(x)
        return Linear(self.num_classes, name="6")(x)


class VGG(nn.Module):
    """torchvision VGG (no batch norm). Input NHWC, normalised like torchvision's."""

    cfg: tuple
    num_classes: int = 1000
    in_channels: int = 3

    @nn.compact
    def __call__(self, x):
        x = VGGFeatures(self.cfg, name="features")(x)
        x = AdaptiveAvgPool((7, 7), name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return VGGClassifier(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        return {**feature_aliases(self.cfg), "pre_logits": "classifier.4"}


VGG16 = functools.partial(VGG, CFGS["vgg16"])
VGG19 = functools.partial(VGG, CFGS["vgg19"])
