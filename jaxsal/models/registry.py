"""Architecture names (as torchvision spells them) and how to build each model."""

from __future__ import annotations

import flax.linen as nn

from jaxsal.models.densenet import DenseNet121
from jaxsal.models.mobilenet import MobileNetV2
from jaxsal.models.resnet import ResNet18, ResNet34, ResNet50
from jaxsal.models.small_cnn import SmallCNN, SmallCNNBN
from jaxsal.models.vgg import VGG16, VGG19

ARCHITECTURES = {
    "vgg16": VGG16,
    "vgg19": VGG19,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "densenet121": DenseNet121,
    "mobilenet_v2": MobileNetV2,
    "small_cnn": SmallCNN,
    "small_cnn_bn": SmallCNNBN,
}

TORCHVISION_ARCHITECTURES = tuple(a for a in ARCHITECTURES if not a.startswith("small_cnn"))


def build_module(arch: str, *, num_classes: int | None = None):
    """The Linen module of `arch` (torchvision name), e.g. `build_module("resnet50")`."""
    if arch not in ARCHITECTURES:
        raise ValueError(
            f'unknown architecture "{arch}"; known architectures: {", ".join(ARCHITECTURES)}'
        )
    kwargs = {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return ARCHITECTURES[arch](**kwargs)


def arch_of(module: nn.Module) -> str:
    for name, ctor in ARCHITECTURES.items():
        if ctor(num_classes=module.num_classes) == module:
            return name
    raise ValueError(f"{type(module).__name__} is not one of {', '.join(ARCHITECTURES)}")
