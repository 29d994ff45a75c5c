"""scikit-image's photographs (shipped with the package, no download) as model inputs."""

from __future__ import annotations

import numpy as np

from jaxsal import preprocess

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photo_batch(names=PHOTOS, *, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Photos resized (shorter side) and centre-cropped to `size`.

    Returns:
      (x, pixels): `x` normalised like torchvision's ImageNet inputs, (N, size,
      size, 3) float32, and the [0, 1] pixels for display.
    """
    import skimage.data

    images = [np.asarray(getattr(skimage.data, n)())[..., :3] for n in names]
    x = np.asarray(preprocess.imagenet_preprocess(images, size=size, resize=size))
    return x.astype(np.float32), np.asarray(preprocess.imagenet_display(x))
