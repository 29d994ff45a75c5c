"""Data sets that run without a download, and the batch interface all data sources share."""

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
    "STD",
    "Scenes",
    "as_arrays",
    "batches",
    "composite_scenes",
    "digit_scenes",
    "mnist_digits",
    "source_indices",
    "tight_box",
]
