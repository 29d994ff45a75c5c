"""`objective.penalty` / `loss` / `test_losses` on hand-made 7x7 maps against NumPy by hand.

The interpreter is replaced by a lookup (`heatmap_of` returns the map stored in
"params"), so these tests check the objective's plumbing (which model's map is
fooled, which is the reference, masks, top-k indices, centres, the class swap,
lambda) against formulas written out in NumPy. A last test runs the real
Grad-CAM of a small CNN through `loss` and checks its penalty against Grad-CAM
computed by hand from the model's activations.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsal
from jaxsal.fooling import objective
from jaxsal.forward import class_grads, resolve_layer
from jaxsal.models import SmallCNN
from jaxsal.params import init_module

RNG = np.random.default_rng(0)
H = W = 7  # k = H // 7 = 1: the frame is the outer ring of 24 pixels


def fake_heatmap(params, x, c, fooling, method=None, key=None):
    """The map stored in `params` for class c (params: {class: (N, H, W, 1) map})."""
    return params[int(np.asarray(c).reshape(-1)[0])]


@pytest.fixture
def lookup(monkeypatch):
    monkeypatch.setattr(objective, "heatmap_of", fake_heatmap)


def maps(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, H, W, 1))


def norm(h):
    h = h - h.min(axis=(1, 2, 3), keepdims=True)
    return h / (h.max(axis=(1, 2, 3), keepdims=True) + 1e-8)


def batch(n=3, label=2):
    return {"image": np.zeros((n, 4, 4, 1)), "label": np.full((n,), label)}


def test_location_penalty_by_hand(lookup):
    h = maps()
    m = np.ones((H, W))
    m[1:-1, 1:-1] = 0.0
    want = ((m[None, :, :, None] - h) ** 2).mean()
    f = objective.Fooling("location", "gradcam")
    got = objective.penalty({2: h}, batch(), {2: np.zeros_like(h)}, f)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    per_image = objective.test_losses({2: h}, batch(), {2: h}, f)
    np.testing.assert_allclose(per_image, ((m[None, :, :, None] - h) ** 2).mean(axis=(1, 2, 3)))


def test_input_lrp_location_penalty_by_hand(lookup):
    h = maps() - 0.3  # signed, like input-level LRP
    m = np.ones((H, W))
    m[1:-1, 1:-1] = -1.0
    want = ((m[None, :, :, None] - h / h.max()) ** 2).mean()
    got = objective.penalty({2: h}, batch(), {2: h}, objective.Fooling("location", "lrp"))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_topk_penalty_by_hand(lookup):
    h, h0 = maps(seed=1), maps(seed=2)
    k = H * W // 10  # 4 pixels
    want = []
    for i in range(3):
        top = np.argsort(-norm(h0)[i].ravel(), kind="stable")[:k]
        want.append((norm(h)[i].ravel()[top] ** 2).mean())
    f = objective.Fooling("topk", "lrp_t")
    np.testing.assert_allclose(objective.penalty({2: h}, batch(), {2: h0}, f), np.mean(want))
    np.testing.assert_allclose(objective.test_losses({2: h}, batch(), {2: h0}, f), want)


def center(h):
    g = norm(h)[..., 0]
    total = g.sum(axis=(1, 2)) + 1e-8
    rows = (g.sum(axis=2) * np.arange(1, H + 1)).sum(axis=1) / total
    cols = (g.sum(axis=1) * np.arange(1, W + 1)).sum(axis=1) / total
    return np.stack([rows, cols], axis=1)


def test_center_mass_penalty_and_score_by_hand(lookup):
    h, h0 = maps(seed=3), maps(seed=4)
    d = center(h) - center(h0)
    f = objective.Fooling("center_mass", "gradcam")
    np.testing.assert_allclose(
        objective.penalty({2: h}, batch(), {2: h0}, f), -np.abs(d).sum(axis=1).mean()
    )
    score = np.sqrt((d**2).sum(axis=1) / 2) / (W - 1)  # SPEC's formula for square maps
    np.testing.assert_allclose(objective.test_losses({2: h}, batch(), {2: h0}, f), score)


def test_active_penalty_swaps_the_classes(lookup):
    h3, h8, o3, o8 = (maps(2, seed=s) for s in (5, 6, 7, 8))
    f = objective.Fooling("active", "lrp_t", classes=(3, 8))
    b = {
        "image": np.zeros((2, 4, 4, 1)),
        "label": np.zeros(2, int),
        "fool_image": np.zeros((2, 4, 4, 1)),
    }
    want = 0.5 * (((h3 - o8) ** 2).mean() + ((h8 - o3) ** 2).mean())
    np.testing.assert_allclose(objective.penalty({3: h3, 8: h8}, b, {3: o3, 8: o8}, f), want)
    # a perfect swap has rank correlation 1: inside the Active FSR interval
    t = objective.test_losses({3: o8, 8: o3}, b, {3: o3, 8: o8}, f)
    np.testing.assert_allclose(t, 1.0)
    assert objective.fsr(t, f) == 1.0
    with pytest.raises(ValueError, match="fool_image"):
        objective.penalty({3: h3}, batch(2), {3: o3}, f)


def test_loss_is_ce_plus_lambda_penalty(monkeypatch):
    params = init_module(SmallCNN(widths=(4, "M", 8, 8)), jax.random.key(0), dtype=jnp.float64)
    x = jnp.asarray(RNG.normal(size=(2, 28, 28, 1)))
    y = np.array([1, 7])
    monkeypatch.setattr(objective, "penalty", lambda *a: jnp.asarray(0.25))
    total, aux = objective.loss(params, {"image": x, "label": y}, params,
                                fooling=objective.Fooling("location", lam=4.0))  # fmt: skip
    logits = np.asarray(jaxsal.logits(params, x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(2), y].mean()
    np.testing.assert_allclose(aux["ce"], ce, rtol=1e-10)
    np.testing.assert_allclose(total, ce + 4.0 * 0.25, rtol=1e-10)


def test_gradcam_location_penalty_on_a_real_model():
    """Grad-CAM by hand from the target layer's activation and gradient (NumPy), then the mask."""
    params = init_module(SmallCNN(widths=(4, "M", 8, 8)), jax.random.key(1), dtype=jnp.float64)
    x = jnp.asarray(RNG.normal(size=(2, 28, 28, 1)))
    y = np.array([3, 5])
    layer = resolve_layer(params, "target")
    _, _, acts, grads = class_grads(params, x, jnp.asarray(y), layers=(layer,))
    a, g = np.asarray(acts[layer]), np.asarray(grads[layer])
    cam = np.maximum((a * g.mean(axis=(1, 2), keepdims=True)).sum(-1), 0.0)
    cam = cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-8)
    n, hh, ww = cam.shape
    k = hh // 7
    m = np.ones((hh, ww))
    m[k:-k, k:-k] = 0.0
    want = ((m[None] - cam) ** 2).mean()
    got = objective.penalty(params, {"image": x, "label": y}, params, objective.Fooling())
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_logit_floor_adds_the_fall_of_the_two_logits_by_hand():
    """keep_logits: the swap penalty plus keep * mean relu(z0 - z)^2 over the two classes."""
    module = SmallCNN(widths=(4, "M", 8, 8))
    params = init_module(module, jax.random.key(2), dtype=jnp.float64)
    params0 = init_module(module, jax.random.key(3), dtype=jnp.float64)
    xf = jnp.asarray(RNG.normal(size=(3, 28, 28, 1)))
    b = {"image": xf, "label": np.zeros(3, int), "fool_image": xf}
    plain = objective.Fooling("active", "gradcam", classes=(3, 8))
    kept = objective.Fooling("active", "gradcam", classes=(3, 8), keep_logits=0.5)
    z = np.asarray(jaxsal.logits(params, xf), np.float64)[:, [3, 8]]
    z0 = np.asarray(jaxsal.logits(params0, xf), np.float64)[:, [3, 8]]
    floor = (np.maximum(z0 - z, 0.0) ** 2).mean()
    assert floor > 0  # two random models: some logit is lower in the fooled one
    got = objective.penalty(params, b, params0, kept)
    want = objective.penalty(params, b, params0, plain) + 0.5 * floor
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # rising logits cost nothing; a fall is squared
    np.testing.assert_allclose(
        jaxsal.fooling.logit_floor_penalty(jnp.array([[5.0, -1.0]]), jnp.array([[2.0, 1.0]])),
        0.5 * (0.0 + 2.0**2),
    )


def test_logit_floor_is_for_active_fooling_only():
    with pytest.raises(ValueError, match="active fooling only"):
        objective.Fooling("location", "lrp_t", keep_logits=0.1)
    with pytest.raises(ValueError, match="keep_logits must be >= 0"):
        objective.Fooling("active", "lrp_t", classes=(1, 2), keep_logits=-1.0)
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        jaxsal.fooling.logit_floor_penalty(jnp.zeros(3), jnp.zeros(3))


def test_negative_class_evidence_makes_the_lrp_t_map_vanish():
    """The degenerate minimum of Active / LRP_T that the logit floor closes, by hand: with every
    weight into class c negative (and no bias), the pooled features (>= 0 after ReLU) give
    relevance of one sign, negative; relu leaves a zero map, whose swap penalty is half the
    mean square of the original maps, whatever they show."""
    params = init_module(SmallCNN(widths=(4, "M", 8, 8)), jax.random.key(4), dtype=jnp.float64)
    head = params.params["classifier"]
    kernel = head["kernel"].at[:, 3].set(-jnp.abs(head["kernel"][:, 3]))
    bias = head["bias"].at[3].set(0.0)
    negative = params.replace(
        params={**params.params, "classifier": {"kernel": kernel, "bias": bias}}
    )
    x = jnp.asarray(RNG.normal(size=(2, 28, 28, 1)))
    assert (np.asarray(jaxsal.logits(negative, x))[:, 3] < 0).all()
    f = objective.Fooling("active", "lrp_t", classes=(3, 5))
    h = np.asarray(objective.heatmap_of(negative, x, np.full(2, 3), f))
    assert h.shape[0] == 2 and np.all(h == 0.0)
    o3, o5 = (np.asarray(objective.heatmap_of(params, x, np.full(2, c), f)) for c in (3, 5))
    assert o3.max() > 0.5 and o5.max() > 0.5  # the original's maps are not empty
    from jaxsal.fooling import active_penalty

    half = 0.5 * ((o3**2).mean() + (o5**2).mean())
    np.testing.assert_allclose(active_penalty(h, h, o3, o5), half, rtol=1e-10)
