"""Calibration on validation data: each test's interval, and the class pair of Active fooling.

A fooling test is only informative if the untouched model fails it. For each
test (a fooling kind, a method, a test statistic) the paper's interval R_I is
narrowed, on VALIDATION data, so that the original model's value falls inside
for at most `level` of the images: for a test where low values mean "fooled"
(Location, Top-k) the upper end becomes min(paper's, the level-quantile of
the original's values); where high values mean "fooled" (Center-mass, the
rank correlations and swap scores of Active) the lower end becomes
max(paper's, the (1 - level)-quantile). The test split is not used.

The Active classes: among candidate pairs, the one whose original maps of the
two classes are the most distinct on validation composites (the lowest mean
rank correlation of the two classes' Grad-CAM maps), so that swapping them
is a visible change.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import nan_mean
from experiments.fooling.data import FoolingData
from experiments.fooling.runs import TESTS, paper_interval
from jaxsal.fooling import Fooling, heatmap_of
from jaxsal.metrics import spearman
from jaxsal.params import ModelParams


def interval(kind: str, test: str, original_values: np.ndarray, level: float) -> tuple:
    """The calibrated interval of one test from the original model's validation values."""
    lo, hi = paper_interval(kind, test)
    v = np.asarray(original_values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (lo, hi)
    if TESTS[kind][test] == "low":
        return (lo, float(min(hi, np.quantile(v, level))))
    return (float(max(lo, np.quantile(v, 1.0 - level))), hi)


def choose_classes(
    params0: ModelParams,
    data: FoolingData,
    *,
    candidates=None,
    method: str = "gradcam",
    n: int = 200,
) -> tuple[tuple[int, int], dict]:
    """The pair (c1, c2) whose original maps are the most distinct on validation composites.

    Args:
      params0: the original model.
      data: the study's data (its validation composites are used).
      candidates: pairs to try (default: every pair of the ten digits).
      method: the method whose maps are compared.
      n: validation composites per pair.

    Returns:
      ((c1, c2), {"pair": mean rank correlation of the two classes' maps}).
    """
    pairs = list(candidates or itertools.combinations(range(params0.num_classes), 2))
    fooling = Fooling("active", method, classes=pairs[0])

    @jax.jit
    def similarity(x, c1, c2):
        h1 = heatmap_of(params0, x, c1, fooling)
        h2 = heatmap_of(params0, x, c2, fooling)
        return spearman(h1, h2)

    scores = {}
    for a, b in pairs:
        x = data.composites("validation", (a, b))["image"][:n]
        c1, c2 = (jnp.full((len(x),), k, jnp.int32) for k in (a, b))
        scores[f"{a}-{b}"] = nan_mean(np.asarray(similarity(jnp.asarray(x), c1, c2)))
    defined = {k: v for k, v in scores.items() if np.isfinite(v)}  # constant maps: undefined
    if not defined:
        raise ValueError(
            "the original model's maps are constant on every validation composite, so no class "
            "pair can be chosen for Active fooling; train the model further or set "
            "DataConfig.classes"
        )
    best = min(defined, key=defined.get)
    a, b = (int(k) for k in best.split("-"))
    return (a, b), scores
