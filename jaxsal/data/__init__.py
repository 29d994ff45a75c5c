"""Data sets that run without a download, and the batch interface all data sources share."""

from jaxsal.data.backgrounds import PHOTOS
from jaxsal.data.photo_scenes import (
    PHOTO_MEAN,
    PHOTO_STD,
    VARIANTS,
    SceneVariant,
    photo_backgrounds,
    photo_composites,
    photo_scenes,
    photo_source_indices,
    photo_statistics,
    scene_variant,
)
from jaxsal.data.pipeline import as_arrays, batches
from jaxsal.data.scenes import (
    MEAN,
    STD,
    Scenes,
    composite_scenes,
    digit_scenes,
    mnist_digits,
    source_indices,
    tight_box,
)

__all__ = [
    "MEAN",
    "PHOTOS",
    "PHOTO_MEAN",
    "PHOTO_STD",
    "STD",
    "VARIANTS",
    "SceneVariant",
    "Scenes",
    "as_arrays",
    "batches",
    "composite_scenes",
    "digit_scenes",
    "mnist_digits",
    "photo_backgrounds",
    "photo_composites",
    "photo_scenes",
    "photo_source_indices",
    "photo_statistics",
    "scene_variant",
    "source_indices",
    "tight_box",
]
