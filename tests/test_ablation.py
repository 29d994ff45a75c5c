"""Occlusion and Feature Ablation: parity with Captum 0.9 (float64), closed forms, chunks, errors.

Reference: torchvision VGG16 and ResNet50 with random weights, randomised
BatchNorm statistics and non-zero biases, converted by
`weights_convert.from_torchvision`; relative error `max|ours - ref| / max|ref|`
below 1e-8. Captum's Occlusion divides its sums after a `.float()` (float32);
`captum_float64` keeps float64 there. Nothing is random. On a linear model
both methods have closed forms: the drop of a feature is its weighted
difference from the baseline.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import FeatureAblation, Occlusion
from parity import captum_float64, converted, relative_error, superpixels
from torch_ref import to_nchw

import jaxsal
from jaxsal.interpreters.ablation import feature_ablation, occlusion

TOL = 1e-8
SIZE = 32
CLASSES = np.array([3, 7])


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    model: torch.nn.Module
    params: jaxsal.ModelParams
    x: np.ndarray


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def case(request) -> Case:
    return Case(request.param, *converted(request.param, SIZE))


def test_occlusion_parity(case):
    """12x12 windows over 2 of 3 channels, strides (8, 8, 1): 4 x 4 x 2 windows, the last
    row and column cut at the border, overlaps averaged; a baseline image; through a jit."""
    baseline = 0.2 * np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 3))
    with captum_float64():
        ref = Occlusion(case.model).attribute(
            to_nchw(case.x), sliding_window_shapes=(2, 12, 12), strides=(1, 8, 8),
            baselines=to_nchw(baseline), target=torch.from_numpy(CLASSES),
            perturbations_per_eval=5,
        )  # fmt: skip
    run = jax.jit(lambda p, x, c, b: occlusion(p, x, c, sliding_window_shapes=(12, 12, 2),
                                                strides=(8, 8, 1), baseline=b, chunk=5))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES), baseline)
    assert relative_error(ours, ref) < TOL


def test_feature_ablation_parity(case):
    mask = superpixels(SIZE)
    ref = FeatureAblation(case.model).attribute(
        to_nchw(case.x), baselines=0.5, target=torch.from_numpy(CLASSES),
        feature_mask=torch.from_numpy(mask)[None, None], perturbations_per_eval=4,
    )  # fmt: skip
    run = jax.jit(lambda p, x, c: feature_ablation(p, x, c, feature_mask=mask, baseline=0.5,
                                                   chunk=4))  # fmt: skip
    ours = run(case.params, case.x, jnp.asarray(CLASSES))
    assert relative_error(ours, ref) < TOL


# ------------------------------------------------------------------ a linear model: closed forms


@pytest.fixture(scope="module")
def linear():
    """f(x) = flatten(x) @ W + b on 8x8x2 images, 4 classes; x, classes, W as (8, 8, 2, 4)."""
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(8 * 8 * 2, 4)), rng.normal(size=(1, 4))
    params = jaxsal.wrap(lambda v, x: x.reshape(x.shape[0], -1) @ v[0] + v[1],
                         (jnp.asarray(w), jnp.asarray(b)), input_shape=(8, 8, 2))  # fmt: skip
    x = rng.normal(size=(3, 8, 8, 2))
    return params, x, np.array([0, 3, 1]), w.reshape(8, 8, 2, 4)


def test_closed_forms_on_a_linear_model(linear):
    params, x, c, w = linear
    base = 0.3
    contrib = (x - base) * np.moveaxis(w[..., c], -1, 0)  # w_c * (x - baseline), per value
    # 1x1x1 windows: each value's own contribution.
    one = occlusion(params, x, c, sliding_window_shapes=(1, 1, 1), baseline=base)
    np.testing.assert_allclose(one, contrib, rtol=1e-12, atol=1e-12)
    # 3x3 windows over both channels, stride 1: the mean over covering windows of their sums.
    win = occlusion(params, x, c, sliding_window_shapes=(3, 3), strides=1, baseline=base)
    sums = contrib.sum(-1)
    starts = range(8 - 3 + 1)
    total, count = np.zeros((3, 8, 8)), np.zeros((8, 8))
    for i in starts:
        for j in starts:
            window_sum = sums[:, i : i + 3, j : j + 3].sum((1, 2))
            total[:, i : i + 3, j : j + 3] += window_sum[:, None, None]
            count[i : i + 3, j : j + 3] += 1
    np.testing.assert_allclose(win, np.repeat((total / count)[..., None], 2, -1), rtol=1e-12)
    # Feature ablation with per-image masks: each feature's summed contribution.
    masks = np.random.default_rng(3).integers(0, 5, size=(3, 8, 8))
    fa = feature_ablation(params, x, c, feature_mask=masks, baseline=base)
    per_pixel = contrib.sum(-1)
    want = np.stack([np.vectorize(lambda k, n=n: per_pixel[n][masks[n] == k].sum())(masks[n])
                     for n in range(3)])  # fmt: skip
    np.testing.assert_allclose(fa, np.repeat(want[..., None], 2, -1), rtol=1e-12, atol=1e-12)


def test_chunks_jit_and_traced_masks(linear):
    params, x, c, _ = linear
    kw = dict(sliding_window_shapes=[4, 4, 1], strides=(3, 3, 1))  # a list is accepted
    full = occlusion(params, x, c, **kw)
    np.testing.assert_allclose(occlusion(params, x, c, chunk=7, **kw), full, rtol=1e-13)
    mask = np.arange(64).reshape(8, 8) // 9
    fa = feature_ablation(params, x, c, feature_mask=mask)
    np.testing.assert_allclose(feature_ablation(params, x, c, feature_mask=mask, chunk=3), fa,
                               rtol=1e-13)  # fmt: skip
    traced = jax.jit(lambda m: feature_ablation(params, x, c, feature_mask=m, n_features=8))
    np.testing.assert_allclose(traced(mask), fa, rtol=1e-13)


def test_bad_hyper_parameters(linear):
    params, x, c, _ = linear
    with pytest.raises(ValueError, match="occlusion needs sliding_window_shapes="):
        occlusion(params, x, c)
    with pytest.raises(ValueError, match="does not fit the image .* along its height"):
        occlusion(params, x, c, sliding_window_shapes=(9, 2))
    with pytest.raises(ValueError, match="stride 4 along the width must be between 1 and"):
        occlusion(params, x, c, sliding_window_shapes=(2, 2), strides=(1, 4))
    with pytest.raises(ValueError, match=r"must be \(h, w\) or \(h, w, channels\)"):
        occlusion(params, x, c, sliding_window_shapes=(2, 2, 1, 1))
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        occlusion(params, x, c, sliding_window_shapes=(2, 2), chunk=0)
    with pytest.raises(ValueError, match="feature_ablation needs feature_mask="):
        feature_ablation(params, x, c)
    with pytest.raises(TypeError, match="feature_mask must hold integer"):
        feature_ablation(params, x, c, feature_mask=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="negative id"):
        feature_ablation(params, x, c, feature_mask=-np.ones((8, 8), int))
    with pytest.raises(ValueError, match=r"feature_mask of shape \(8, 7\) does not fit"):
        feature_ablation(params, x, c, feature_mask=np.zeros((8, 7), int))
    with pytest.raises(ValueError, match="pass n_features=4 or leave it out"):
        feature_ablation(params, x, c, feature_mask=np.arange(64).reshape(8, 8) % 4, n_features=2)
    with pytest.raises(ValueError, match="pass n_features=M"):
        jax.jit(lambda m: feature_ablation(params, x, c, feature_mask=m))(np.zeros((8, 8), int))
    with pytest.raises(ValueError, match="baseline of shape .* does not broadcast"):
        feature_ablation(params, x, c, feature_mask=np.zeros((8, 8), int), baseline=np.ones(3))
