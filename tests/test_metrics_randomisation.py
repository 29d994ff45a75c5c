"""Randomisation metrics against Quantus 0.6.0 in float64, and on hand-made explanations.

Random logit: jaxsal's draw of the other class (from `key`) goes into Quantus's
`np.random.randint`. Model parameter randomisation: jaxsal's fresh weights
(`jaxsal.sanity.fresh_params` of the documented key) are copied into the torch
layers, whose `reset_parameters` Quantus calls, so both sides explain the same
randomised networks, bit for bit.
"""

from __future__ import annotations

import copy
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from skimage.metrics import structural_similarity
from test_metrics_reference import (
    float64_torch,
    load_quantus,
    nchw,
    reference,
    to_torch,
    torch_gradient,
)

from jaxsal import metrics
from jaxsal.sanity import randomization

quantus = load_quantus()
QUIET = {"disable_warnings": True, "display_progressbar": False}
PER_IMAGE = {"normalise_axes": (1, 2, 3)}  # Quantus normalises by the batch's maximum otherwise


def test_flat_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 40))
    b = a + 0.5 * rng.normal(size=(3, 40))
    got = jax.jit(metrics.flat_ssim)(a, b)
    for i in range(3):
        lo, hi = min(a[i].min(), b[i].min()), max(a[i].max(), b[i].max())
        np.testing.assert_allclose(
            got[i], structural_similarity(a[i], b[i], data_range=hi - lo), rtol=1e-12
        )
    np.testing.assert_allclose(metrics.flat_ssim(a, a), 1.0)
    check_grads(metrics.flat_ssim, (a, b), order=1, modes=("rev",))


def test_random_logit_matches_quantus(monkeypatch):
    """Same other class both sides: jaxsal's r (from key) replaces Quantus's np.random.randint."""
    r = reference(3)
    key = jax.random.key(8)
    f = jax.jit(partial(metrics.random_logit, r.explain, num_classes=10))
    got = f(r.x, r.y, r.a, key=key)
    draw = np.asarray(jax.random.randint(jax.random.split(key)[0], (2,), 0, 9))
    monkeypatch.setattr(np.random, "randint", lambda *args, **kwargs: draw)
    with float64_torch():
        q = quantus.RandomLogit(num_classes=10, normalise_func_kwargs=PER_IMAGE, **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            explain_func=torch_gradient,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=1e-12, atol=0)


def test_random_logit_never_draws_the_explained_class():
    x = jnp.zeros((500, 2, 2, 1))
    y = jnp.arange(500) % 4
    seen = []

    def explain(x, y_other, key):
        seen.append(y_other)
        return jnp.ones((x.shape[0], 2, 2)) * y_other[:, None, None]

    a = jnp.ones((500, 2, 2)) * y[:, None, None]
    sim = metrics.random_logit(explain, x, y, a, key=jax.random.key(0), num_classes=4,
                               normalise=False, similarity=lambda a, b: (a == b).all(axis=1))  # fmt: skip
    assert not sim.any()
    other = np.asarray(seen[0])
    assert (other != y).all() and set(other.tolist()) == {0, 1, 2, 3}
    same = lambda x, y, k: jnp.ones((x.shape[0], 2, 2)) * jnp.arange(4.0).reshape(1, 2, 2)  # noqa: E731
    np.testing.assert_allclose(
        metrics.random_logit(
            same,
            x[:3, :2],
            y[:3],
            same(x[:3], y, 0),
            key=jax.random.key(1),
            num_classes=4,
            similarity=metrics.spearman,
        ),  # fmt: skip
        1.0,
    )
    with pytest.raises(ValueError, match="num_classes"):
        metrics.random_logit(same, x[:3], y[:3], same(x[:3], y, 0), key=jax.random.key(1),
                             num_classes=1)  # fmt: skip


@pytest.mark.parametrize("layer_order", ["top_down", "bottom_up", "independent"])
def test_model_parameter_randomisation_matches_quantus(layer_order):
    """The same randomised weights both sides (jaxsal's fresh draw in torch's reset_parameters)."""
    r = reference(3)
    key = jax.random.key(9)
    got = jax.jit(
        partial(metrics.model_parameter_randomisation, r.explain_params, layer_order=layer_order)
    )(r.params, r.x, r.y, r.a, key=key)
    fresh = randomization.fresh_params(r.params, jax.random.split(key)[0])
    net = copy.deepcopy(r.net)
    for name, weights in to_torch(fresh, net).items():
        net.get_submodule(name).fresh = weights
    with float64_torch():
        q = quantus.MPRT(layer_order=layer_order, **QUIET)(
            model=net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            explain_func=torch_gradient,
        )  # fmt: skip
    order = ["features.0", "features.3", "features.6", "classifier"]
    assert randomization.parameter_layers(r.params) == order
    assert list(q) == ["original"] + (order[::-1] if layer_order == "top_down" else order)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got, np.array(list(q.values())).T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[:, 0], 1.0)


def test_model_parameter_randomisation_of_a_weight_free_explanation_is_one():
    r = reference(3)
    blind = lambda p, x, y, k: x.sum(axis=-1)  # noqa: E731
    got = metrics.model_parameter_randomisation(
        blind, r.params, r.x, r.y, r.x.sum(axis=-1), key=jax.random.key(0)
    )
    np.testing.assert_allclose(got, 1.0)
    with pytest.raises(ValueError, match="layer_order"):
        metrics.model_parameter_randomisation(
            blind, r.params, r.x, r.y, r.x.sum(axis=-1), key=jax.random.key(0), layer_order="up"
        )
