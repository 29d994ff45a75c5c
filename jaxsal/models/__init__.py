"""Flax ports of torchvision CNNs (NHWC) and a small CNN for the embedded default."""

from jaxsal.models.densenet import DenseNet, DenseNet121
from jaxsal.models.mobilenet import MobileNetV2
from jaxsal.models.registry import (
    ARCHITECTURES,
    TORCHVISION_ARCHITECTURES,
    arch_of,
    build_module,
)
from jaxsal.models.resnet import ResNet, ResNet18, ResNet34, ResNet50
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.models.vgg import VGG, VGG16, VGG19

__all__ = [
    "ARCHITECTURES",
    "TORCHVISION_ARCHITECTURES",
    "VGG",
    "VGG16",
    "VGG19",
    "DenseNet",
    "DenseNet121",
    "MobileNetV2",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "SmallCNN",
    "arch_of",
    "build_module",
]
