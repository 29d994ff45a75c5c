"""Completeness and non-sensitivity against Quantus 0.6.0 in float64, and on exact models.

Both are deterministic (baselines, no random draws); both run under `jax.jit`.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("channels, baseline", [(3, "black"), (3, "mean"), (1, "black")])
def test_completeness_matches_quantus(channels, baseline):
    """Quantus returns `sum(a) == f(x) - f(x_b)`; its `output_func` records the difference.

    Quantus replaces as many input values as the map has, so RGB inputs get per-channel maps
    (gradient x input); single-channel inputs the (N, H, W) gradient.
    """
    r = reference(channels)
    a = r.a if channels == 1 else np.asarray(jax.grad(lambda x: jnp.take_along_axis(
        r.model(x), jnp.asarray(r.y)[:, None], 1).sum())(jnp.asarray(r.x))) * r.x  # fmt: skip
    got = jax.jit(partial(metrics.completeness, r.model, baseline=baseline))(r.x, r.y, a)
    seen = []
    with float64_torch():
        q = quantus.Completeness(
            normalise=False, perturb_baseline=baseline, output_func=lambda d: seen.append(d) or d,
            **QUIET,
        )(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, channel_first=True,
            a_batch=a[:, None] if channels == 1 else nchw(a),
        )  # fmt: skip
    expected = a.reshape(2, -1).sum(axis=1) - seen[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(q, np.asarray(got) == 0)


def test_completeness_of_gradient_x_input_of_a_linear_model():
    w = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    model = lambda x: jnp.stack([(w * x).sum(axis=(1, 2, 3)), jnp.zeros(x.shape[0])], -1)  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    y = jnp.zeros(2, int)
    gap = jax.jit(partial(metrics.completeness, model, baseline=0.0))(x, y, w * x)
    np.testing.assert_allclose(gap, 0.0, atol=1e-12)
    assert (jnp.abs(metrics.completeness(model, x, y, w, baseline=0.0)) > 1e-3).all()
    check_grads(lambda a: metrics.completeness(model, x, y, a, baseline=0.0), (w,), order=1)
    check_grads(lambda x: metrics.completeness(model, x, y, w * x), (x,), order=1, modes=("rev",))


def test_non_sensitivity_matches_quantus():
    """One feature at a time (8x8x3 = 192 forward passes); a third of the map zeroed."""
    r = reference(3)
    x = r.x[:, :8, :8]
    a = np.array(r.explain(jnp.asarray(x), jnp.asarray(r.y), None))
    a[:, :3] = 0.0
    got = jax.jit(partial(metrics.non_sensitivity, r.model, batch_size=32))(x, r.y, a)
    with float64_torch():
        q = quantus.NonSensitivity(normalise_func_kwargs=PER_IMAGE, **QUIET)(
            model=r.net, x_batch=nchw(x), y_batch=r.y, a_batch=a[:, None], channel_first=True
        )
    np.testing.assert_array_equal(got, q)
    assert (np.asarray(got) > 0).all()


def test_non_sensitivity_of_a_model_blind_to_the_right_half():
    model = lambda x: jnp.stack([x[:, :, :3].sum(axis=(1, 2, 3)), jnp.zeros(x.shape[0])], -1)  # noqa: E731
    x = jax.random.uniform(jax.random.key(0), (1, 4, 6, 2), minval=1.0, maxval=2.0)
    y = jnp.zeros(1, int)
    left = jnp.zeros((1, 4, 6)).at[:, :, :3].set(1.0)
    kw = dict(baseline=0.0, softmax=False)
    np.testing.assert_array_equal(metrics.non_sensitivity(model, x, y, left, **kw), 0)
    np.testing.assert_array_equal(
        metrics.non_sensitivity(model, x, y, jnp.ones((1, 4, 6)), **kw), 24
    )
    np.testing.assert_array_equal(metrics.non_sensitivity(model, x, y, 1 - left, **kw), 48)
