"""The input-manipulation attack lowers its explanation loss and respects its constraints."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxsal
from jaxsal.sanity import AttackConfig, explanation_map, manipulate, manipulation_scores


def grad_expl(p, x, c, k):
    return jaxsal.simple_grad.core(p, x, c)


def test_explanation_map_is_abs_channel_sum_normalised():
    h = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    want = np.abs(np.asarray(h)).sum(-1, keepdims=True)
    want /= want.sum(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(explanation_map(h), want, rtol=1e-6)


def test_beta_schedule_is_geometric_from_10_to_100():
    b = AttackConfig(steps=5).betas()
    np.testing.assert_allclose(b, 10 * 10 ** (np.arange(5) / 4))
    assert AttackConfig(beta_start=None).betas() is None


def test_attack_reduces_explanation_loss_on_a_tiny_model():
    params = jaxsal.init("small_cnn", jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1), jnp.float32)
    c = jnp.array([1, 2])
    target = explanation_map(jaxsal.simple_grad(params, x[::-1], c))  # the other image's map
    config = AttackConfig(steps=40, learning_rate=5e-2, chunk=20)
    bounds = (-1.5, 1.5)
    x_adv, log = manipulate(params, x, target, grad_expl, bounds=bounds, config=config, c=c,
                            progress=False)  # fmt: skip
    assert log["expl_mse"].shape == (40,)
    assert log["expl_mse"][-5:].mean() < 0.75 * log["expl_mse"][0]
    assert float(x_adv.min()) >= bounds[0] and float(x_adv.max()) <= bounds[1]
    # judged with the model itself (ReLU): closer to the target than the original was
    before = np.mean((np.asarray(explanation_map(jaxsal.simple_grad(params, x, c))) - target) ** 2)
    scores = manipulation_scores(params, x, x_adv, target, grad_expl, c=c)
    assert scores["mse_target"].mean() < before
    assert scores["input_mse"].min() > 0
    # beta held per chunk (for interpreters that hash the module) runs the same schedule
    static = AttackConfig(steps=4, learning_rate=2e-2, chunk=2, traced_beta=False)
    _, log2 = manipulate(params, x, target, grad_expl, bounds=bounds, config=static, c=c,
                         progress=False)  # fmt: skip
    assert np.isfinite(log2["expl_mse"]).all()
