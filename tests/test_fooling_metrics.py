"""FSR test losses, Spearman (against scipy) and AOPC on a linear model computed by hand."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxsal
from jaxsal import fooling, metrics
from jaxsal.models import SmallCNN


def one_hot(n_h, n_w, *points):
    h = np.zeros((len(points), n_h, n_w, 1))
    for b, (i, j) in enumerate(points):
        h[b, i, j, 0] = 1.0
    return h


# --- Spearman -----------------------------------------------------------------------------


def test_rankdata_matches_scipy_with_ties():
    a = np.random.default_rng(0).integers(0, 5, size=(4, 30)).astype(float)
    expected = scipy.stats.rankdata(a, method="average", axis=-1)
    np.testing.assert_array_equal(jax.jit(metrics.rankdata)(a), expected)


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 5, 7, 7, 1))
    if ties:
        a, b = np.round(a), np.round(b * 2)
    b[0] = a[0] ** 3  # a monotone map: correlation 1
    b[1] = -a[1]
    expected = [scipy.stats.spearmanr(u.ravel(), v.ravel()).statistic for u, v in zip(a, b)]
    got = jax.jit(metrics.spearman)(a, b)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[:2], [1.0, -1.0], rtol=1e-12)


def test_spearman_constant_is_nan():
    a = np.ones((1, 7, 7, 1))
    assert bool(jnp.isnan(metrics.spearman(a, np.random.default_rng(2).random(a.shape))[0]))


# --- Per-image test losses ----------------------------------------------------------------


def test_location_and_topk_test_losses():
    h = np.stack([np.zeros((7, 7, 1)), np.ones((7, 7, 1))])
    np.testing.assert_allclose(fooling.location_test_loss(h), [24 / 49, 25 / 49])
    h_orig = np.arange(98.0).reshape(2, 7, 7, 1)  # top 4: flat indices 45..48
    h = one_hot(7, 7, (6, 6), (0, 0))
    np.testing.assert_allclose(fooling.topk_test_loss(h, h_orig), [0.25, 0.0], atol=1e-7)


def test_center_mass_score_by_hand():
    # Opposite corners of a square map: the largest shift, score 1.
    got = fooling.center_mass_score(one_hot(7, 7, (0, 0)), one_hot(7, 7, (6, 6)))
    np.testing.assert_allclose(got, [1.0], rtol=1e-7)
    # (1, 1) -> (4, 5): dh = 3, dw = 4; SPEC: sqrt((9 + 16) / 2) / 6.
    got = jax.jit(fooling.center_mass_score)(one_hot(7, 7, (1, 1)), one_hot(7, 7, (4, 5)))
    np.testing.assert_allclose(got, [np.sqrt(12.5) / 6], rtol=1e-7)
    # Non-square maps: normalised by the diagonal, still 1 at opposite corners.
    got = fooling.center_mass_score(one_hot(5, 9, (0, 0)), one_hot(5, 9, (4, 8)))
    np.testing.assert_allclose(got, [1.0], rtol=1e-7)
    same = fooling.center_mass_score(one_hot(7, 7, (3, 3)), one_hot(7, 7, (3, 3)))
    assert float(same[0]) == 0.0
    g = jax.grad(lambda a: fooling.center_mass_score(a, a).sum())(
        jnp.asarray(one_hot(7, 7, (3, 3)))
    )
    assert bool(jnp.isfinite(g).all())


def test_active_test_loss():
    rng = np.random.default_rng(3)
    h1, h2, o1, o2 = rng.random((4, 3, 7, 7, 1))
    expected = [
        0.5
        * (
            scipy.stats.spearmanr(h1[i].ravel(), o2[i].ravel()).statistic
            + scipy.stats.spearmanr(h2[i].ravel(), o1[i].ravel()).statistic
        )
        for i in range(3)
    ]
    got = jax.jit(fooling.active_test_loss)(h1, h2, o1, o2)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(fooling.active_test_loss(2 * o2, o1**2, o1, o2), [1.0] * 3)
    np.testing.assert_allclose(fooling.active_test_loss(-o2, -o1, o1, o2), [-1.0] * 3)


# --- Fooling Success Rate -----------------------------------------------------------------


def test_fooling_success_rate_by_hand():
    losses = jnp.array([0.1, 0.25, 0.2, 0.0, jnp.nan])  # 3 of 5 in [0, 0.2]; NaN fails
    assert float(fooling.fooling_success_rate(losses, "location")) == pytest.approx(0.6)
    assert float(fooling.fooling_success_rate(losses, "topk")) == pytest.approx(0.8)
    assert float(fooling.fooling_success_rate(losses, "center_mass")) == pytest.approx(0.6)
    assert float(fooling.fooling_success_rate(losses, (0.15, 0.3))) == pytest.approx(0.4)
    rho = jnp.array([0.9, 0.5, 0.49, -1.0])
    assert float(jax.jit(partial(fooling.fooling_success_rate, interval="active"))(rho)) == 0.5
    assert fooling.FSR_INTERVALS == {
        "location": (0.0, 0.2),
        "topk": (0.0, 0.3),
        "center_mass": (0.1, 1.0),
        "active": (0.5, 1.0),
    }
    with pytest.raises(ValueError, match="unknown fooling"):
        fooling.fooling_success_rate(losses, "frame")
    with pytest.raises(ValueError, match="low <= high"):
        fooling.fooling_success_rate(losses, (1.0, 0.0))


# --- AOPC ---------------------------------------------------------------------------------

N, SIZE, CH, CLASSES, PATCH = 2, 8, 3, 3, 2  # a 4x4 grid of 2x2 patches


@pytest.fixture(scope="module")
def linear():
    """A linear model f(x) = <W_k, x> + b_k and the hand-computed region contributions."""
    rng = np.random.default_rng(4)
    w = rng.normal(size=(SIZE, SIZE, CH, CLASSES))
    b = rng.normal(size=(CLASSES,))
    x = rng.normal(size=(N, SIZE, SIZE, CH))
    c = np.array([0, 2])

    def model_fn(v):
        return jnp.einsum("nhwc,hwck->nk", v, w) + b.reshape(1, -1)

    contrib = x * w[..., c].transpose(3, 0, 1, 2)  # gradient x input, (N, H, W, C)
    per_region = contrib.sum(-1).reshape(N, 4, PATCH, 4, PATCH).sum(axis=(2, 4)).reshape(N, 16)
    f0 = np.einsum("nhwc,nhwc->n", x, w[..., c].transpose(3, 0, 1, 2)) + b[c]
    return model_fn, x, c, contrib, per_region, f0


def test_aopc_by_hand():
    curve = jnp.array([[5.0, 3.0, 2.0, 2.0], [1.0, 1.0, 2.0, 0.0]])
    np.testing.assert_allclose(fooling.aopc(curve), [(0 + 2 + 3 + 3) / 4, (0 + 0 - 1 + 1) / 4])
    cumulative = fooling.aopc(curve, cumulative=True)
    np.testing.assert_allclose(cumulative[0], [0.0, 1.0, 5 / 3, 2.0])


def test_morf_curve_on_linear_model(linear):
    model_fn, x, c, contrib, per_region, f0 = linear
    # Removing a region (reference 0) lowers the score by exactly its contribution.
    expected = f0[:, None] - np.concatenate(
        [np.zeros((N, 1)), np.cumsum(-np.sort(-per_region, axis=1), axis=1)], axis=1
    )
    run = partial(fooling.perturbation_curve, model_fn, patch=PATCH, reference=0.0)
    np.testing.assert_allclose(run(x, c, contrib), expected, rtol=1e-12, atol=1e-12)
    # A map at the grid's resolution gives the same order and sets the patch size itself.
    grid_map = per_region.reshape(N, 4, 4, 1)
    got = jax.jit(lambda a, m: fooling.perturbation_curve(model_fn, a, c, m, reference=0.0))(
        x, grid_map
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    short = run(x, c, contrib, steps=5)
    np.testing.assert_allclose(short, expected[:, :6], rtol=1e-12, atol=1e-12)
    # LeRF removes the least relevant first.
    lerf = run(x, c, contrib, order="lerf")
    np.testing.assert_allclose(lerf[:, 1], f0 - per_region.min(axis=1), rtol=1e-12)


def test_morf_beats_random_on_linear_model(linear):
    model_fn, x, c, contrib, per_region, f0 = linear
    run = partial(fooling.perturbation_curve, model_fn, x, c, patch=PATCH, reference=0.0)
    morf = fooling.aopc(run(contrib))
    lerf = fooling.aopc(run(contrib, order="lerf"))
    for seed in range(3):
        curve = run(None, order="random", key=jax.random.key(seed))
        # The random curve removes every region once: its steps are a permutation.
        steps = -np.diff(np.asarray(curve), axis=1)
        np.testing.assert_allclose(np.sort(steps, 1), np.sort(per_region, 1), atol=1e-12)
        rand = fooling.aopc(curve)
        assert bool((morf > rand).all()) and bool((rand > lerf).all())


@pytest.mark.parametrize("reference, second_moment", [("normal", 0.09), ("uniform", 1 / 3)])
def test_noise_reference(reference, second_moment):
    x = jnp.full((2, 32, 32, 3), 5.0)

    def model_fn(v):  # mean of squares: reveals the noise's second moment
        return (v**2).mean(axis=(1, 2, 3)).reshape(-1, 1)

    curve = fooling.perturbation_curve(
        model_fn, x, 0, jnp.ones((2, 4, 4, 1)), reference=reference, key=jax.random.key(0)
    )
    np.testing.assert_allclose(curve[:, 0], 25.0)
    # All 16 patches replaced: 3,072 noise values per image; 5 standard errors of tolerance.
    tol = 5 * second_moment * np.sqrt(2 / x[0].size) * (2 if reference == "uniform" else 1)
    np.testing.assert_allclose(curve[:, -1], second_moment, atol=tol)
    assert bool((jnp.diff(curve, axis=1) < 0).all())


def test_perturbation_curve_with_jaxsal_logits():
    # Random weights filled in by hand: flax's initialisers take seconds to compile on CPU.
    module = SmallCNN(widths=(8, "M", 8, 8))
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
    leaves, tree = jax.tree.flatten(shapes)
    rng = np.random.default_rng(5)
    weights = [jnp.asarray(0.3 * rng.normal(size=leaf.shape)) for leaf in leaves]
    params = jaxsal.ModelParams(module=module, params=jax.tree.unflatten(tree, weights))
    heatmap = jax.random.uniform(jax.random.key(2), (2, 7, 7, 1))
    model_fn = jax.jit(partial(jaxsal.logits, params))
    curve = fooling.perturbation_curve(model_fn, x, 3, heatmap, steps=4, reference=0.0)
    assert curve.shape == (2, 5)
    np.testing.assert_allclose(curve[:, 0], model_fn(x)[:, 3], rtol=1e-12)
    # After removing the 4 most relevant 4x4 patches the image is x with those patches zeroed.
    order = np.argsort(-np.asarray(heatmap).reshape(2, 49), axis=1, kind="stable")[:, :4]
    keep = np.ones((2, 49))
    keep[np.arange(2)[:, None], order] = 0
    keep = np.repeat(np.repeat(keep.reshape(2, 7, 7), 4, 1), 4, 2)[..., None]
    np.testing.assert_allclose(curve[:, -1], model_fn(x * keep)[:, 3], rtol=1e-12)


def test_perturbation_bad_inputs_raise(linear):
    model_fn, x, c, contrib, _, _ = linear
    with pytest.raises(ValueError, match="tile"):
        fooling.perturbation_curve(model_fn, x, c, contrib, patch=3, reference=0.0)
    with pytest.raises(ValueError, match="key="):
        fooling.perturbation_curve(model_fn, x, c, contrib, patch=2)
    with pytest.raises(ValueError, match="key="):
        fooling.perturbation_curve(model_fn, x, c, None, patch=2, order="random", reference=0.0)
    with pytest.raises(ValueError, match="unknown order"):
        fooling.perturbation_curve(model_fn, x, c, contrib, patch=2, order="best")
    with pytest.raises(ValueError, match="steps"):
        fooling.perturbation_curve(model_fn, x, c, contrib, patch=2, steps=17, reference=0.0)


def test_mass_in_boxes_and_active_swap_score_by_hand():
    """A 4x4 map of an 8x8 input (2x2-pixel cells); boxes cover whole and half cells."""
    h = np.zeros((1, 4, 4, 1))
    h[0, 0, 0, 0], h[0, 3, 3, 0], h[0, 0, 3, 0] = 3.0, 1.0, -5.0  # the negative cell is ignored
    own = np.array([[[0, 0, 2, 2], [0, 0, 0, 0]]])  # cell (0, 0); an empty padding box
    other = np.array([[[6, 6, 8, 7]]])  # half of cell (3, 3)
    np.testing.assert_allclose(fooling.mass_in_boxes(h, own, (8, 8)), [3.0 / 4.0])
    np.testing.assert_allclose(fooling.mass_in_boxes(h, other, (8, 8)), [0.5 / 4.0])
    np.testing.assert_allclose(fooling.active_swap_score(h, own, other, (8, 8)), [0.5 / 4 - 0.75])
    np.testing.assert_allclose(fooling.mass_in_boxes(np.zeros((1, 4, 4, 1)), own, (8, 8)), [0.0])
