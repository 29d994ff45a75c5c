"""Localisation and complexity metrics against Quantus 0.6.0 in float64, and hand-made maps.

These metrics read maps (and masks) only: deterministic, no random draws.
Every metric runs under `jax.jit`; the differentiable ones have their
gradients checked by finite differences.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from test_metrics_reference import float64_torch, load_quantus, nchw, reference

from jaxsal import metrics

quantus = load_quantus()
QUIET = {"disable_warnings": True, "display_progressbar": False}
PER_IMAGE = {"normalise_axes": (1, 2, 3)}  # Quantus normalises by the batch's maximum otherwise
BOXES = np.array([[[2, 3, 9, 12], [0, 0, 0, 0]], [[5, 1, 16, 7], [0, 10, 4, 16]]])


def run_quantus(metric, r, a, mask):
    with float64_torch(), warnings.catch_warnings():
        # AttributionLocalisation divides by the size of x_batch[2:], empty for two images
        warnings.simplefilter("ignore")
        return np.asarray(
            metric(
                model=r.net,
                x_batch=nchw(r.x),
                y_batch=r.y,
                a_batch=a[:, None],
                s_batch=np.asarray(mask)[:, None],
                channel_first=True,
            ),  # fmt: skip
            dtype=float,
        )


LOCALISATION = [
    ("pointing_game", {}, lambda: quantus.PointingGame(**QUIET)),
    ("relevance_mass_accuracy", {}, lambda: quantus.RelevanceMassAccuracy(**QUIET)),
    ("relevance_rank_accuracy", {}, lambda: quantus.RelevanceRankAccuracy(**QUIET)),
    ("top_k_intersection", {"k": 20}, lambda: quantus.TopKIntersection(k=20, **QUIET)),
    ("top_k_intersection", {"k": 20, "concept_influence": True},
     lambda: quantus.TopKIntersection(k=20, concept_influence=True, **QUIET)),
    ("attribution_localisation", {},
     lambda: quantus.AttributionLocalisation(normalise_func_kwargs=PER_IMAGE, **QUIET)),
    ("attribution_localisation", {"abs": False, "positive_attributions": True},
     lambda: quantus.AttributionLocalisation(abs=False, positive_attributions=True,
                                             normalise_func_kwargs=PER_IMAGE, **QUIET)),
]  # fmt: skip


@pytest.mark.parametrize("name, options, theirs", LOCALISATION)
def test_localisation_matches_quantus(name, options, theirs):
    r = reference(3)
    mask = metrics.box_mask(BOXES, (16, 16))
    a = r.a if name != "pointing_game" else np.abs(r.a) * np.asarray(mask)  # a hit and a miss
    if name == "pointing_game":
        a[1] = np.abs(r.a[1]) * ~np.asarray(mask[1])
    got = jax.jit(partial(getattr(metrics, name), **options))(a, mask)
    q = run_quantus(theirs(), r, a, mask)
    np.testing.assert_allclose(got, q, rtol=1e-13, atol=1e-15)
    if name == "pointing_game":
        np.testing.assert_array_equal(got, [1.0, 0.0])


def test_box_mask():
    m = jax.jit(metrics.box_mask, static_argnums=1)(BOXES, (16, 16))
    assert m.shape == (2, 16, 16) and m.dtype == bool
    assert m[0].sum() == 7 * 9 and m[0, 2, 3] and not m[0, 9, 3] and not m[0, 2, 12]
    assert m[1].sum() == 11 * 6 + 4 * 6
    np.testing.assert_array_equal(metrics.box_mask(BOXES[:1, 0], (16, 16)), m[:1])
    with pytest.raises(ValueError, match="y0, x0, y1, x1"):
        metrics.box_mask(np.zeros((2, 3)), (16, 16))


def test_pointing_game_on_a_5x5_map():
    a = np.zeros((4, 5, 5))
    a[:, 2, 2] = 1.0
    a[3, 4, 4] = 1.0  # a tie, one peak inside
    mask = np.zeros((4, 5, 5), bool)
    mask[0, 1:4, 1:4] = True  # hit
    mask[1, 0, :] = True  # miss
    mask[3, 4, 4] = True
    got = np.asarray(metrics.pointing_game(a, mask))
    np.testing.assert_array_equal(got[[0, 1, 3]], [1.0, 0.0, 1.0])
    assert np.isnan(got[2])  # empty mask
    weighted = np.asarray(metrics.pointing_game(a, mask, weighted=True))
    np.testing.assert_allclose(weighted[[0, 1, 3]], [1 - 9 / 25, 0.0, 1 - 1 / 25])


def test_mass_rank_top_k_and_localisation_on_hand_made_maps():
    mask = np.zeros((2, 6, 6), bool)
    mask[:, 1:3, 1:4] = True
    inside = np.where(mask, 2.0, 0.0)
    half = inside + np.where(mask, 0.0, 12.0 / 30)  # 12 of the total 24 outside
    np.testing.assert_allclose(metrics.relevance_mass_accuracy(inside, mask), 1.0)
    np.testing.assert_allclose(metrics.relevance_mass_accuracy(half, mask), 0.5)
    np.testing.assert_allclose(metrics.relevance_rank_accuracy(inside + 0.01, mask), 1.0)
    np.testing.assert_allclose(metrics.top_k_intersection(inside, mask, k=4), 1.0)
    np.testing.assert_allclose(
        metrics.top_k_intersection(inside, mask, k=4, concept_influence=True), 36 / 6
    )
    np.testing.assert_allclose(metrics.attribution_localisation(inside, mask), 1.0, atol=1e-8)
    np.testing.assert_allclose(
        metrics.attribution_localisation(inside, mask, weighted=True), 6 / 36, atol=1e-8
    )
    rgb = np.repeat(inside[..., None] / 3, 3, axis=-1)  # channels are summed
    np.testing.assert_allclose(metrics.relevance_mass_accuracy(rgb, mask), 1.0)


def test_localisation_gradients():
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.uniform(0.1, 1.0, size=(2, 6, 6)))
    mask = metrics.box_mask(np.array([[1, 1, 4, 5], [0, 2, 6, 3]]), (6, 6))
    for f in (metrics.relevance_mass_accuracy, metrics.attribution_localisation):
        check_grads(lambda a, f=f: f(a, mask), (a,), order=1, modes=("rev",))


def test_localisation_errors_name_the_fix():
    a = np.zeros((2, 6, 6))
    with pytest.raises(ValueError, match="box_mask"):
        metrics.pointing_game(a, np.zeros((2, 5, 5), bool))
    with pytest.raises(ValueError, match="k must be"):
        metrics.top_k_intersection(a, np.zeros((2, 6, 6), bool), k=0)


@pytest.mark.parametrize("name", ["sparseness", "complexity"])
def test_complexity_matches_quantus(name):
    r = reference(3)
    got = jax.jit(getattr(metrics, name))(r.a)
    theirs = {"sparseness": quantus.Sparseness, "complexity": quantus.Complexity}[name]
    with float64_torch():
        q = theirs(normalise_func_kwargs=PER_IMAGE, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True
        )
    np.testing.assert_allclose(got, q, rtol=1e-13, atol=0)
    rgb = np.random.default_rng(0).normal(size=r.x.shape)  # every channel value counts
    with float64_torch():
        q = theirs(normalise_func_kwargs=PER_IMAGE, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=nchw(rgb), channel_first=True
        )
    np.testing.assert_allclose(getattr(metrics, name)(rgb), q, rtol=1e-13, atol=0)


def test_sparseness_and_complexity_of_hand_made_maps():
    n = 25
    one_hot = np.zeros((1, 5, 5))
    one_hot[0, 3, 1] = 1.0
    constant = np.ones((1, 5, 5))
    v = np.full(n, 1e-7)  # the shift Quantus adds
    v[-1] += 1.0
    gini = ((2 * np.arange(1, n + 1) - n - 1) * v).sum() / (n * v.sum())
    np.testing.assert_allclose(metrics.sparseness(one_hot), gini, rtol=1e-12)
    np.testing.assert_allclose(metrics.sparseness(one_hot), (n - 1) / n, rtol=1e-5)
    np.testing.assert_allclose(metrics.sparseness(constant), 0.0, atol=1e-15)
    np.testing.assert_allclose(metrics.complexity(one_hot), 0.0, atol=1e-10)
    np.testing.assert_allclose(metrics.complexity(constant), np.log(n), rtol=1e-10)


def test_sparseness_and_complexity_gradients():
    a = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, size=(2, 4, 4)))
    for f in (metrics.sparseness, metrics.complexity):
        check_grads(f, (a,), order=1, modes=("rev",))
