"""The batch interface shared by every data source: dicts of NumPy arrays.

`batches` yields `{"image": (B, H, W, C) float32, "label": ..., "box": ...}`,
the keys the tensorflow-datasets pipelines yield too, so training and
evaluation code never depends on where the data came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from jaxsal.data.scenes import Scenes


def as_arrays(dataset: Scenes | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A `Scenes` or a mapping of equally long arrays, as a dict of arrays."""
    arrays = dataset.as_dict() if isinstance(dataset, Scenes) else dict(dataset)
    if "image" not in arrays:
        raise ValueError(f'a data set needs an "image" array; got keys {sorted(arrays)}')
    n = len(arrays["image"])
    bad = {k: len(v) for k, v in arrays.items() if len(v) != n}
    if bad:
        raise ValueError(f"all arrays need {n} rows (as image); these differ: {bad}")
    return arrays


def batches(
    dataset: Scenes | Mapping[str, np.ndarray],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | tuple[int, ...] = 0,
    epochs: int | None = 1,
    drop_remainder: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of a data set, epoch after epoch.

    Args:
      dataset: a `Scenes` (keys image, label, box) or a mapping of arrays with equal length.
      batch_size: rows per batch.
      shuffle: reshuffle the rows at every epoch (a different order each epoch).
      seed: seed of the shuffling (an int or a tuple of ints).
      epochs: passes over the data; None repeats forever.
      drop_remainder: skip the last, smaller batch of each epoch.

    Returns:
      An iterator of dicts of NumPy arrays with the data set's keys.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    arrays = as_arrays(dataset)
    n = len(arrays["image"])
    if drop_remainder and n < batch_size:
        raise ValueError(
            f"drop_remainder with batch_size={batch_size} > {n} rows yields nothing; "
            "lower batch_size or pass drop_remainder=False"
        )
    rng = np.random.default_rng(seed)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = rng.permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_remainder else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield {k: v[idx] for k, v in arrays.items()}
        epoch += 1
