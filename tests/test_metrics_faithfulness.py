"""Faithfulness metrics against Quantus 0.6.0 in float64, and on hand-made cases.

The network is the tiny CNN of `test_metrics_reference` (torch for Quantus,
jaxsal for the metrics); every jaxsal metric runs under `jax.jit` here.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from skimage.segmentation import slic
from test_metrics_reference import float64_torch, load_quantus, nchw, nchw_index, reference

from jaxsal import metrics

quantus = load_quantus()
QUIET = {"disable_warnings": True, "display_progressbar": False}


@pytest.fixture
def trapz(monkeypatch):
    """Quantus's `calculate_auc` calls `np.trapz`, which NumPy 2.4 no longer has."""
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def linear_model(w):
    """Logits (w . x, 0): class 0's score is exactly linear in x."""
    return lambda x: jnp.stack([(w * x).sum(axis=(1, 2, 3)), jnp.zeros(x.shape[0])], axis=-1)


def test_faithfulness_correlation_matches_quantus(monkeypatch):
    """Same random subsets: jaxsal's draws from `key` go into Quantus's `np.random.choice`."""
    r = reference(3)
    runs, size, key = 8, 40, jax.random.key(1)
    f = jax.jit(partial(metrics.faithfulness_correlation, r.model, nr_runs=runs, subset_size=size))
    got = f(r.x, r.y, r.a, key=key)
    keys = jax.random.split(key, (runs, 2))
    draws = iter(
        nchw_index(jax.random.choice(keys[i, j], 16 * 16 * 3, (size,), replace=False), (16, 16, 3))
        for i in range(runs)
        for j in range(2)
    )
    monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: next(draws))
    with float64_torch():
        q = quantus.FaithfulnessCorrelation(
            nr_runs=runs, subset_size=size, return_aggregate=False, **QUIET
        )(model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True)
    np.testing.assert_allclose(got, q, rtol=0, atol=1e-12)


def test_faithfulness_correlation_of_a_linear_model_is_one():
    """Gradient x input of a linear model with a zero baseline is exactly the drop of every subset."""
    w = jax.random.normal(jax.random.key(0), (1, 6, 6, 2))
    x = jax.random.normal(jax.random.key(1), (1, 6, 6, 2))
    score = partial(
        metrics.faithfulness_correlation, linear_model(w), x, jnp.zeros(1, int),
        key=jax.random.key(2), nr_runs=20, subset_size=10, baseline=0.0,
    )  # fmt: skip
    np.testing.assert_allclose(score(w * x), 1.0, atol=1e-12)
    check_grads(score, (w,), order=1, modes=("rev",))  # differentiable in a


def test_pixel_flipping_matches_quantus():
    """Deterministic (a ranking). A per-channel map ranks values without ties; a per-pixel map
    ties a pixel's 3 channels, so 12x12 images flip 4 whole pixels a step (Quantus's unstable
    sort orders tied values arbitrarily)."""
    r = reference(3)
    a_rgb = np.random.default_rng(1).normal(size=r.x.shape)
    x12 = r.x[:, :12, :12]
    a12 = np.asarray(r.explain(jnp.asarray(x12), jnp.asarray(r.y), None))
    for x, a, step in ((r.x, a_rgb, 16), (x12, a12, 12)):
        got = jax.jit(partial(metrics.pixel_flipping, r.model, features_in_step=step))(x, r.y, a)
        with float64_torch():
            q = quantus.PixelFlipping(features_in_step=step, **QUIET)(
                model=r.net, x_batch=nchw(x), y_batch=r.y,
                a_batch=nchw(a) if a.ndim == 4 else a[:, None], channel_first=True,
            )  # fmt: skip
        assert got.shape == (2, x[0].size // step)
        np.testing.assert_allclose(got, np.asarray(q), rtol=0, atol=1e-13)


def test_pixel_flipping_of_a_linear_model_removes_the_top_attributions():
    w = jax.random.normal(jax.random.key(0), (1, 4, 4, 1))
    x = jax.random.normal(jax.random.key(1), (1, 4, 4, 1))
    a = w * x
    got = metrics.pixel_flipping(
        linear_model(w), x, jnp.zeros(1, int), a, baseline=0.0, softmax=False
    )
    top = np.sort(np.asarray(a).ravel())[::-1]
    np.testing.assert_allclose(got[0], a.sum() - np.cumsum(top), atol=1e-12)
    assert abs(got[0, -1]) < 1e-12
    np.testing.assert_allclose(metrics.auc(got), np.trapezoid(got, axis=-1), atol=1e-12)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_matches_quantus(order):
    """Deterministic; 16x16 images padded to 20x20 for 5x5 patches (edge values, zero map)."""
    r = reference(3)
    f = jax.jit(partial(metrics.region_perturbation, r.model, patch_size=5, order=order,
                        regions_evaluation=6))  # fmt: skip
    got = f(r.x, r.y, r.a)
    with float64_torch():
        q = quantus.RegionPerturbation(patch_size=5, order=order, regions_evaluation=6, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True
        )
    assert got.shape == (2, 6)
    np.testing.assert_allclose(got, np.asarray(q), rtol=0, atol=1e-13)


def test_region_insertion_equals_deletion_for_a_linear_model():
    """With a zero baseline, inserting a patch adds exactly what deleting it removes."""
    w = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
    x = jax.random.normal(jax.random.key(1), (1, 8, 8, 2))
    kw = dict(patch_size=2, regions_evaluation=16, baseline=0.0, softmax=False)
    y = jnp.zeros(1, int)
    deletion = metrics.region_perturbation(linear_model(w), x, y, w * x, **kw)
    insertion = metrics.region_perturbation(linear_model(w), x, y, w * x, mode="insertion", **kw)
    np.testing.assert_allclose(deletion, insertion, atol=1e-12)
    sums = np.sort(np.asarray(w * x).reshape(4, 2, 4, 2, 2).sum(axis=(1, 3, 4)).ravel())[::-1]
    np.testing.assert_allclose(deletion[0], np.cumsum(sums), atol=1e-12)
    shuffled = metrics.region_perturbation(
        linear_model(w), x, y, w * x, order="random", key=jax.random.key(0), **kw
    )
    np.testing.assert_allclose(shuffled[0, -1], deletion[0, -1], atol=1e-12)  # all 16 removed


def _segments(x):
    return np.stack([slic(img.astype("double"), start_label=0) for img in np.asarray(x)])


def test_irof_matches_quantus_on_a_single_channel(trapz):
    """Deterministic; the segments are Quantus's own (slic on the HWC image), one image a batch.

    Quantus's "mean" baseline is over the batch it gets, so it runs with batch_size=1.
    """
    r = reference(1)
    segments = _segments(r.x)
    k = int(segments.max()) + 1
    got = jax.jit(partial(metrics.irof, r.model, num_segments=k))(r.x, r.y, r.a, segments)
    with float64_torch():
        q = quantus.IROF(return_aggregate=False, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            batch_size=1,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=0, atol=1e-12)


def test_irof_matches_quantus_on_rgb_with_broadcast_masks(trapz):
    """Quantus 0.6.0 asserts mask and image shapes equal; its replacement, with the mask
    broadcast over the channels, is what jaxsal does."""
    r = reference(3)
    segments = _segments(r.x)

    def replace(arr, mask, **kwargs):
        mask = np.broadcast_to(mask, arr.shape)
        return quantus.functions.perturb_func.baseline_replacement_by_mask(arr, mask, **kwargs)

    got = metrics.irof(r.model, r.x, r.y, r.a, segments)
    with float64_torch():
        q = quantus.IROF(return_aggregate=False, perturb_func=replace, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            batch_size=1,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=0, atol=1e-12)


def test_irof_hand_made():
    """Two halves; the score is the left half's sum: removing it first leaves nothing."""
    x = jnp.ones((1, 4, 4, 1))
    segments = jnp.zeros((1, 4, 4), int).at[:, :, 2:].set(1)
    model = lambda x: jnp.stack([x[:, :, :2].sum(axis=(1, 2, 3)), jnp.zeros(1)], -1)  # noqa: E731
    y = jnp.zeros(1, int)
    left = jnp.where(segments == 0, 1.0, 0.0)
    kw = dict(baseline=0.0, softmax=False)
    np.testing.assert_allclose(metrics.irof(model, x, y, left, segments, **kw), 2.0)
    np.testing.assert_allclose(metrics.irof(model, x, y, 1 - left, segments, **kw), 1.5)
    constant = lambda x: jnp.ones((x.shape[0], 2))  # noqa: E731
    np.testing.assert_allclose(metrics.irof(constant, x, y, left, segments, **kw), 1.0)
    with pytest.raises(ValueError, match="num_segments="):
        jax.jit(partial(metrics.irof, model))(x, y, left, segments)


def test_noisy_linear_imputation_matches_quantus(monkeypatch):
    """Quantus's direct sparse solve against conjugate gradients, with the same noise draws."""
    x = np.random.default_rng(0).normal(size=(2, 9, 11, 3))
    mask = np.zeros((2, 9, 11), bool)
    mask[0, 2:6, 3:9] = True
    mask[0, 0, :4] = True  # touches the border
    mask[1, ::2, 1::3] = True
    key = jax.random.key(3)
    imputed = jax.jit(partial(metrics.noisy_linear_imputation, tol=1e-13))
    z = jax.vmap(lambda k: jax.random.normal(k, (9, 11, 3)))(jax.random.split(key, 2))
    for noise in (0.0, 0.01):
        got = imputed(x, mask, key=key, noise=noise)
        for i in range(2):
            idx = np.flatnonzero(mask[i])
            draws = np.asarray(z[i]).reshape(-1, 3)[idx].T
            monkeypatch.setattr(np.random, "randn", lambda *shape, d=draws: d)
            q = quantus.functions.perturb_func.noisy_linear_imputation(
                nchw(x[i : i + 1])[0], idx, noise=noise
            )
            np.testing.assert_allclose(got[i], q.transpose(1, 2, 0), rtol=0, atol=1e-11)
    np.testing.assert_array_equal(got[~mask], x[~mask])


def test_noisy_linear_imputation_reproduces_a_ramp():
    """The neighbour weights are symmetric, so a linear image is its own imputation."""
    yy, xx = np.mgrid[0:10, 0:12]
    x = (0.3 * yy - 0.2 * xx + 1.0)[None, :, :, None] * np.ones(2)
    mask = np.zeros((1, 10, 12), bool)
    mask[0, 2:8, 3:10] = True
    got = metrics.noisy_linear_imputation(x, mask, key=jax.random.key(0), noise=0.0, tol=1e-13)
    np.testing.assert_allclose(got, x, atol=1e-10)


def test_road_matches_quantus_on_a_single_channel(monkeypatch):
    """Same noise: jaxsal's draws for (percentage, image) go into Quantus's `np.random.randn`.

    Quantus 0.6.0 ranks the map broadcast over the channels and so needs one channel.
    """
    r = reference(1)
    percentages, key = (10, 30, 50, 70, 90), jax.random.key(5)
    f = jax.jit(partial(metrics.road, r.model, percentages=percentages, tol=1e-12))
    got = f(r.x, r.y, r.a, key=key)
    keys = jax.random.split(key, (len(percentages), 2))
    order = np.argsort(-r.a.reshape(2, -1), axis=1)
    draws = iter(
        np.asarray(jax.random.normal(keys[j, i], (16, 16, 1)))
        .reshape(-1, 1)[order[i, : int(256 * p / 100)]]
        .T
        for j, p in enumerate(percentages)
        for i in range(2)
    )
    monkeypatch.setattr(np.random, "randn", lambda *shape: next(draws))
    with float64_torch():
        q = quantus.ROAD(percentages=list(percentages), **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True
        )
    np.testing.assert_array_equal(np.asarray(got).mean(axis=0), [q[p] for p in percentages])


def test_road_keeps_the_class_of_a_constant_model():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    a = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    model = lambda x: jnp.zeros((x.shape[0], 3)).at[:, 2].set(1.0)  # noqa: E731
    got = metrics.road(model, x, jnp.array([2, 1]), a, key=jax.random.key(2), percentages=(20, 60))
    np.testing.assert_array_equal(got, [[1, 1], [0, 0]])


def test_errors_name_the_argument():
    r = reference(3)
    with pytest.raises(ValueError, match="NCHW"):
        metrics.pixel_flipping(r.model, r.x, r.y, nchw(r.a[..., None].repeat(3, -1)))
    with pytest.raises(ValueError, match="features_in_step=5"):
        metrics.pixel_flipping(r.model, r.x, r.y, r.a, features_in_step=5)
    with pytest.raises(ValueError, match="subset_size"):
        metrics.faithfulness_correlation(r.model, r.x, r.y, r.a, key=jax.random.key(0),
                                         subset_size=10**6)  # fmt: skip
    with pytest.raises(ValueError, match="key="):
        metrics.region_perturbation(r.model, r.x, r.y, r.a, order="random")
    with pytest.raises(ValueError, match="one class per image"):
        metrics.pixel_flipping(r.model, r.x, r.y[:1], r.a)
    with pytest.raises(ValueError, match="baseline"):
        metrics.pixel_flipping(r.model, r.x, r.y, r.a, baseline="grey")
