"""Transfer matrix, AOPC curves, weight noise and free adversarial training, checked by hand.

A linear model `logits = flatten(x) @ W + b` gives closed forms: the input
gradient of the cross-entropy is `(softmax - onehot) @ W.T`, the parameter
gradient `x.T @ (softmax - onehot) / N`, and removing a patch (reference 0)
lowers the class logit by the patch's contribution `sum x * W[:, c]`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsal.fooling import adversarial, analysis, objective
from jaxsal.models import SmallCNN
from jaxsal.models.layers import Flatten, Linear
from jaxsal.params import ModelParams, init_module
from jaxsal.train import evaluate

RNG = np.random.default_rng(0)


class LinearNet(nn.Module):
    num_classes: int = 3
    in_channels: int = 1

    @nn.compact
    def __call__(self, x):
        return Linear(self.num_classes, name="fc")(Flatten(name="flatten")(x))


def linear_model(size=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(size * size, classes))
    b = rng.normal(size=(classes,))
    return ModelParams(module=LinearNet(classes), params={"fc": {"kernel": jnp.asarray(w),
                                                                  "bias": jnp.asarray(b)}})  # fmt: skip


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- transfer matrix ----------------------------------------------------------------------


def test_transfer_matrix_plumbing(monkeypatch):
    """Chunks are concatenated in order, each method gets its own losses, intervals per kind."""
    scale = {"gradcam": 0.1, "lrp_t": 1.0, "simple_grad": np.nan}

    def fake(params, params0, batch, fooling, method):
        key = "fool_image" if fooling.kind == "active" else "image"
        return jnp.asarray(batch[key][:, 0, 0, 0] * scale[method] * params["gain"])

    monkeypatch.setattr(analysis, "_test_losses", fake)
    values = np.linspace(0.0, 1.0, 11)  # 11 images in chunks of 4
    data = {"image": values.reshape(-1, 1, 1, 1), "label": np.zeros(11, int),
            "fool_image": values.reshape(-1, 1, 1, 1)}  # fmt: skip
    fooled = {
        "loc": ({"gain": 1.0}, objective.Fooling("location", "gradcam")),
        "act": ({"gain": 2.0}, objective.Fooling("active", "lrp_t", classes=(1, 2))),
    }
    methods = ("gradcam", "lrp_t", "simple_grad")
    matrix = analysis.transfer_matrix(fooled, None, data, methods=methods, batch_size=4)
    # location interval [0, 0.2]: losses 0.1 v -> all 11; v -> 0, 0.1, 0.2 -> 3; NaN -> none
    assert matrix["loc"] == {"gradcam": 1.0, "lrp_t": 3 / 11, "simple_grad": 0.0}
    # active interval [0.5, 1]: 0.2 v in it never; 2 v for v in {0.3, 0.4, 0.5} -> 3
    assert matrix["act"] == {"gradcam": 0.0, "lrp_t": 3 / 11, "simple_grad": 0.0}
    losses = analysis.test_losses_by_method({"gain": 1.0}, None, data, fooled["loc"][1],
                                            methods=("lrp_t",), batch_size=4)  # fmt: skip
    np.testing.assert_allclose(losses["lrp_t"], values)
    assert analysis.fsr_by_method(losses, fooled["loc"][1], interval=(0.45, 0.75)) == {
        "lrp_t": 3 / 11
    }


# --- AOPC ---------------------------------------------------------------------------------


def test_aopc_curves_on_a_linear_model(monkeypatch):
    """MoRF by a map = the logit minus the largest patch contributions first; by hand."""
    params0, params = linear_model(seed=1), linear_model(seed=2)
    x = RNG.normal(size=(2, 4, 4, 1))
    c = np.array([0, 2])

    def contribution(p, xx, cc):  # (N, 2, 2, 1): each 2x2 patch's share of the class logit
        w = jnp.asarray(p.params["fc"]["kernel"])[:, cc].T.reshape(-1, 4, 4, 1)
        return (jnp.asarray(xx) * w).reshape(-1, 2, 2, 2, 2).sum(axis=(2, 4))[..., None]

    monkeypatch.setattr(analysis, "heatmap_of",
                        lambda p, xx, cc, f: contribution(p, xx, cc))  # fmt: skip
    f = objective.Fooling("location", "gradcam")
    out = analysis.aopc_curves(params0, params, x, c, f, key=jax.random.key(0), reference=0.0,
                               probabilities=False)  # fmt: skip
    for model_name, model in (("original", params0), ("fooled", params)):
        for order, ref in (("original_map", params0), ("fooled_map", params)):
            by = np.asarray(contribution(ref, x, c)).reshape(2, 4)
            own = np.asarray(contribution(model, x, c)).reshape(2, 4)
            logits = np.asarray(x).reshape(2, -1) @ np.asarray(model.params["fc"]["kernel"])
            f0 = logits[np.arange(2), c] + np.asarray(model.params["fc"]["bias"])[c]
            curves = []
            for i in range(2):
                order_i = np.argsort(-by[i], kind="stable")
                scores = f0[i] - np.concatenate([[0.0], np.cumsum(own[i][order_i])])
                drops = scores[0] - scores
                curves.append(np.cumsum(drops) / np.arange(1, 6))
            np.testing.assert_allclose(out[model_name][order], np.mean(curves, axis=0),
                                       atol=1e-10, err_msg=f"{model_name} {order}")  # fmt: skip
        # removing everything ends at the bias whatever the order
        assert out[model_name]["random"].shape == (5,) and out[model_name]["random"][0] == 0.0


# --- weight noise -------------------------------------------------------------------------


def test_perturb_params_scale():
    params = linear_model(size=32, classes=40)
    w = np.asarray(params.params["fc"]["kernel"])
    zero = analysis.perturb_params(params, 0.0, key=jax.random.key(0))
    np.testing.assert_array_equal(zero.params["fc"]["kernel"], w)
    a = analysis.perturb_params(params, 0.1, key=jax.random.key(0))
    b = analysis.perturb_params(params, 0.3, key=jax.random.key(0))
    da = np.asarray(a.params["fc"]["kernel"]) - w
    db = np.asarray(b.params["fc"]["kernel"]) - w
    np.testing.assert_allclose(db, 3 * da, rtol=1e-9)  # one draw, scaled by the level
    assert abs(da.std() / (0.1 * w.std()) - 1) < 0.02  # 40,960 draws: relative std error 0.4%
    with pytest.raises(ValueError, match=">= 0"):
        analysis.perturb_params(params, -1.0, key=jax.random.key(0))


def test_noise_zero_gives_the_fooled_models_own_figures():
    params0 = init_module(SmallCNN(widths=(4, "M", 8, 8)), jax.random.key(0))
    params = analysis.perturb_params(params0, 0.3, key=jax.random.key(5))  # some "fooled" model
    data = {"image": RNG.normal(size=(6, 28, 28, 1)).astype(np.float32), "label": np.arange(6)}
    f = objective.Fooling("location", "gradcam")

    def ev(p):
        m = evaluate(p, data)
        return {"top1": m["accuracy"], "top5": m["top5"]}

    rows = analysis.noise_robustness(params, params0, data, f, levels=(0.0, 0.5),
                                     key=jax.random.key(1), evaluate=ev)  # fmt: skip
    own = ev(params)
    t = objective.test_losses(params, data, params0, f)
    assert rows[0]["top1"] == own["top1"] and rows[0]["top5"] == own["top5"]
    assert rows[0]["fsr"] == {"gradcam": pytest.approx(float(np.mean(np.asarray(t) <= 0.2)))}
    assert rows[1]["fsr"]["gradcam"] >= 0.0 and 0.0 <= rows[1]["top1"] <= 1.0
    assert [r["level"] for r in rows] == [0.0, 0.5]


# --- free adversarial training ------------------------------------------------------------


def test_free_step_on_a_linear_model():
    """Each replay: SGD on the loss at x + delta, delta moved by eps * sign(input gradient)."""
    from jaxsal.train import make_mesh, make_step, masked

    params = linear_model(seed=3)
    x = RNG.normal(size=(5, 4, 4, 1))
    y = np.array([0, 1, 2, 1, 0])
    eps, lr = 0.25, 0.1
    tx = masked(adversarial.free_optimizer(optax.sgd(lr), eps=eps), (params, np.zeros_like(x)))
    project = lambda t: (t[0], jnp.clip(t[1], -eps, eps))  # noqa: E731
    step = make_step(adversarial.free_adversarial_loss, tx, mesh=make_mesh(jax.devices()[:1]),
                     project=project)  # fmt: skip
    w, b = (np.asarray(params.params["fc"][k]) for k in ("kernel", "bias"))
    delta = np.zeros_like(x)
    trained = (params, jnp.asarray(delta))
    state = tx.init(trained)
    batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
    for _ in range(3):
        xf = (x + delta).reshape(5, -1)
        err = softmax(xf @ w + b)
        err[np.arange(5), y] -= 1.0
        gx = (err @ w.T / 5).reshape(x.shape)
        w, b = w - lr * xf.T @ err / 5, b - lr * err.mean(axis=0)
        trained, state, _ = step(trained, state, batch, None)
        delta = np.clip(delta + eps * np.sign(gx), -eps, eps)
        p, new_delta = trained
        np.testing.assert_allclose(new_delta, delta, atol=1e-12)
        np.testing.assert_allclose(p.params["fc"]["kernel"], w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(p.params["fc"]["bias"], b, rtol=1e-10, atol=1e-12)
    assert np.abs(delta).max() == pytest.approx(eps)


def test_free_training_keeps_delta_within_eps_and_pgd_too():
    params = linear_model(seed=4)
    images, labels = RNG.normal(size=(12, 4, 4, 1)), RNG.integers(0, 3, 12)
    data = [{"image": images[i : i + 4], "label": labels[i : i + 4]} for i in (0, 4, 8)]
    eps = 0.1
    trained, rec = adversarial.free_adversarial_training(
        params, {"image": images, "label": labels}, tx=optax.adam(1e-2), eps=eps, batch_size=4,
        steps=3, replays=3, progress=False,
    )  # fmt: skip
    assert len(rec["loss"]) == 9 and rec["max_abs_delta"] <= eps + 1e-12
    assert not np.allclose(trained.params["fc"]["kernel"], params.params["fc"]["kernel"])
    x, y = jnp.asarray(data[0]["image"]), jnp.asarray(data[0]["label"])
    xa = adversarial.pgd(params, x, y, eps=eps, steps=4)
    assert np.abs(np.asarray(xa - x)).max() <= eps + 1e-12
    ce = lambda xx: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
        params.apply(xx), y).mean()  # fmt: skip
    assert ce(xa) > ce(x)  # the attack raises the loss
    clean = adversarial.adversarial_accuracy(params, data[0], eps=0.0)
    logits = np.asarray(params.apply(x))
    assert clean == pytest.approx(float(np.mean(logits.argmax(1) == data[0]["label"])))
