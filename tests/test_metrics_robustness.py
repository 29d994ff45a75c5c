"""Robustness metrics against Quantus 0.6.0 and Captum 0.9 in float64, and on hand-made cases.

Randomness is matched by feeding jaxsal's draws (documented in each metric's
docstring) to Quantus's and Captum's `perturb_func`; the explanation on both
sides is the channel-summed input gradient of the tiny CNN, every jaxsal
metric runs under `jax.jit`.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max
from jax.test_util import check_grads
from test_metrics_reference import float64_torch, load_quantus, nchw, reference, torch_gradient

from jaxsal import metrics

quantus = load_quantus()
QUIET = {"disable_warnings": True, "display_progressbar": False}
PER_IMAGE = {"normalise_axes": (1, 2, 3)}  # Quantus normalises by the batch's maximum otherwise


def sample_noise(key, samples, shape, draw):
    """The noise of each sample as the robustness metrics draw it, in Quantus's NCHW flat layout."""
    keys = jax.random.split(key, samples)
    return [nchw(draw(jax.random.split(k)[0], shape)).reshape(shape[0], -1) for k in keys]


def feeder(noise):
    draws = iter(noise)
    return lambda arr, indices, **kwargs: arr + next(draws)


def uniform(low, high):
    return lambda k, shape: jax.random.uniform(k, shape, jnp.float64, low, high)


@pytest.mark.parametrize("name", ["max", "avg"])
def test_sensitivity_matches_quantus(name):
    """Same uniform noise both sides (jaxsal's draws into Quantus's perturb_func)."""
    r = reference(3)
    key, samples = jax.random.key(2), 4
    ours = {"max": metrics.max_sensitivity, "avg": metrics.avg_sensitivity}[name]
    theirs = {"max": quantus.MaxSensitivity, "avg": quantus.AvgSensitivity}[name]
    f = jax.jit(partial(ours, r.explain, nr_samples=samples))
    got = f(r.x, r.y, r.a, key=key)
    noise = sample_noise(key, samples, r.x.shape, uniform(-0.2, 0.2))
    with float64_torch():
        q = theirs(nr_samples=samples, perturb_func=feeder(noise), **QUIET)(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            explain_func=torch_gradient,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=1e-12, atol=0)


def test_max_sensitivity_nan_when_the_prediction_changes_matches_quantus():
    """Large noise changes some predictions: NaN there on both sides (normalised per image)."""
    r = reference(3)
    key, samples = jax.random.key(4), 3
    got = metrics.max_sensitivity(
        r.explain, r.x, r.y, r.a, key=key, nr_samples=samples, lower_bound=3.0, normalise=True,
        abs=True, model=r.model, return_nan_when_prediction_changes=True,
    )  # fmt: skip
    noise = sample_noise(key, samples, r.x.shape, uniform(-3.0, 3.0))
    with float64_torch():
        q = quantus.MaxSensitivity(
            nr_samples=samples, perturb_func=feeder(noise), lower_bound=3.0, normalise=True,
            abs=True, normalise_func_kwargs=PER_IMAGE, return_nan_when_prediction_changes=True,
            **QUIET,
        )(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            explain_func=torch_gradient,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=1e-12, atol=0)
    assert np.isnan(got).any()


def test_local_lipschitz_estimate_matches_quantus():
    """Same Gaussian noise both sides; normalised per image (Quantus's normalise_axes)."""
    r = reference(3)
    key, samples = jax.random.key(3), 4
    got = jax.jit(partial(metrics.local_lipschitz_estimate, r.explain, nr_samples=samples))(
        r.x, r.y, r.a, key=key
    )
    noise = sample_noise(
        key, samples, r.x.shape, lambda k, s: 0.1 * jax.random.normal(k, s, jnp.float64)
    )
    with float64_torch():
        q = quantus.LocalLipschitzEstimate(
            nr_samples=samples, perturb_func=feeder(noise), normalise_func_kwargs=PER_IMAGE, **QUIET
        )(
            model=r.net, x_batch=nchw(r.x), y_batch=r.y, a_batch=r.a[:, None], channel_first=True,
            explain_func=torch_gradient,
        )  # fmt: skip
    np.testing.assert_allclose(got, q, rtol=1e-12, atol=0)


def test_sensitivities_of_hand_made_explanations():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 2))
    y = jnp.array([0, 1])
    key = jax.random.key(1)
    frozen = lambda x, y, k: jnp.ones((x.shape[0], 6, 6))  # noqa: E731
    np.testing.assert_array_equal(
        metrics.max_sensitivity(frozen, x, y, frozen(x, y, key), key=key, nr_samples=3), 0.0
    )
    double = lambda x, y, k: 2 * x  # noqa: E731
    lle = metrics.local_lipschitz_estimate(
        double, x, y, 2 * x, key=key, nr_samples=3, normalise=False
    )
    np.testing.assert_allclose(lle, 2.0, rtol=1e-8)
    avg = metrics.avg_sensitivity(double, x, y, 2 * x, key=key, nr_samples=200, lower_bound=0.1)
    # E||u|| / ||x|| for u uniform in [-0.1, 0.1]^72: about sqrt(72 * 0.01 / 3) / ||x||
    np.testing.assert_allclose(
        avg, np.sqrt(72 * 0.01 / 3) / np.linalg.norm(x.reshape(2, -1), axis=1), rtol=0.05
    )
    a = jax.random.normal(jax.random.key(2), (2, 6, 6, 2))
    for f in (metrics.max_sensitivity, metrics.local_lipschitz_estimate):  # differentiable in a
        check_grads(lambda a, f=f: f(double, x, y, a, key=key, nr_samples=3), (a,), order=1,
                    modes=("rev",))  # fmt: skip
    with pytest.raises(ValueError, match="model="):
        metrics.max_sensitivity(
            double, x, y, 2 * x, key=key, return_nan_when_prediction_changes=True
        )
    with pytest.raises(ValueError, match="explain"):
        metrics.max_sensitivity(frozen, x, y, 2 * x, key=key, nr_samples=1)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum(normalize):
    """Same Gaussian perturbations I both sides, x - I perturbed (Captum's perturb_func)."""
    r = reference(3)
    key, samples = jax.random.key(6), 5
    f = jax.jit(partial(metrics.infidelity, r.model, n_perturb_samples=samples, noise_std=0.1,
                        normalize=normalize))  # fmt: skip
    got = f(r.x, r.y, r.a, key=key)
    noise = np.stack(
        [nchw(0.1 * jax.random.normal(k, r.x.shape)) for k in jax.random.split(key, samples)], 1
    ).reshape(-1, 3, 16, 16)  # Captum's rows: image-major, sample-minor

    def perturb(inputs):
        assert inputs.shape == noise.shape
        i = torch.from_numpy(noise)
        return i, inputs - i

    with float64_torch(), torch.no_grad():
        c = captum_infidelity(
            r.net, perturb, torch.from_numpy(nchw(r.x)),
            torch.from_numpy(nchw(np.broadcast_to(r.a[..., None], r.x.shape))),
            target=torch.from_numpy(r.y), n_perturb_samples=samples, normalize=normalize,
        )  # fmt: skip
    np.testing.assert_allclose(got, c.numpy(), rtol=1e-12, atol=1e-15)


def test_infidelity_of_a_linear_model_is_zero_and_differentiable():
    w = jax.random.normal(jax.random.key(0), (1, 5, 5, 2))
    model = lambda x: jnp.stack([(w * x).sum(axis=(1, 2, 3)), jnp.zeros(x.shape[0])], -1)  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 2))
    y = jnp.zeros(1, int)
    key = jax.random.key(2)
    np.testing.assert_allclose(metrics.infidelity(model, x, y, w, key=key), 0.0, atol=1e-20)
    a = jax.random.normal(jax.random.key(3), w.shape)
    check_grads(
        lambda a: metrics.infidelity(model, x, y, a, key=key), (a,), order=1, modes=("rev",)
    )

    def binary(k, x):  # remove a random 30% of the features: I is the mask (Captum's global form)
        i = jax.random.bernoulli(k, 0.3, x.shape).astype(x.dtype)
        return i, x - i * x

    got = metrics.infidelity(model, x, y, w * x, key=key, perturb=binary)
    np.testing.assert_allclose(got, 0.0, atol=1e-20)  # gradient x input is complete here


def test_sensitivity_max_matches_captum():
    """Same uniform noise both sides (Captum's perturb_func); Captum explains x itself."""
    r = reference(3)
    key, samples = jax.random.key(7), 4
    got = jax.jit(partial(metrics.sensitivity_max, r.explain, n_perturb_samples=samples))(
        r.x, r.y, key=key
    )
    k1 = jax.random.split(key)[1]
    noise = np.stack(
        [nchw(jax.random.uniform(jax.random.split(k)[0], r.x.shape, jnp.float64, -0.02, 0.02))
         for k in jax.random.split(k1, samples)], 1,
    ).reshape(-1, 3, 16, 16)  # fmt: skip

    def perturb(inputs, radius):
        assert inputs.shape == noise.shape and radius == 0.02
        return inputs + torch.from_numpy(noise)

    def explanation(inputs, target):  # a tuple in, a tuple out, as Captum's attribution methods
        if isinstance(inputs, tuple):
            return (explanation(inputs[0], target),)
        return torch.from_numpy(torch_gradient(r.net, inputs.numpy(), target.numpy()))

    with float64_torch():
        c = captum_sensitivity_max(
            explanation, torch.from_numpy(nchw(r.x)), perturb_func=perturb,
            n_perturb_samples=samples, target=torch.from_numpy(r.y),
        )  # fmt: skip
    np.testing.assert_allclose(got, c.numpy(), rtol=1e-12, atol=0)


def test_sensitivity_max_of_the_identity_explanation():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    got = metrics.sensitivity_max(lambda x, y, k: x, x, jnp.array([0, 1]), key=jax.random.key(1),
                                  perturb_radius=0.1, norm_ord=jnp.inf)  # fmt: skip
    np.testing.assert_array_less(got, 0.1 / jnp.abs(x).reshape(2, -1).max(axis=1) + 1e-12)
    assert (got > 0.09 / jnp.abs(x).reshape(2, -1).max(axis=1)).all()
