"""Each perturbation explainer on a model whose output depends on one image region only.

The right answer is known: the map must concentrate on that region (its
maximum inside, most of its mass there). A second model has an exactly
constant output, where the optimised masks follow Adam's known trajectory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import explainers as E
from jaxsal import pointing as pg

H = 24
BOX = (4, 13, 11, 21)  # (y0, x0, y1, x1): the region the model looks at
INSIDE = np.zeros((H, H), bool)
INSIDE[BOX[0] : BOX[2], BOX[1] : BOX[3]] = True


def region_model(x):
    """Class 0's logit grows with the region's mean brightness and falls with the rest's."""
    img = x[..., 0]
    w = jnp.asarray(INSIDE, x.dtype)[None]
    inside = (img * w).sum(axis=(1, 2)) / INSIDE.sum()
    outside = (img * (1.0 - w)).sum(axis=(1, 2)) / (~INSIDE).sum()
    z = 10.0 * (inside - 0.6) - (outside - 0.5)
    return jnp.stack([z, jnp.zeros_like(z)], axis=-1)


@pytest.fixture(scope="module")
def images():
    x = jax.random.uniform(jax.random.key(3), (2, H, H, 1), jnp.float64)
    return x.at[:, INSIDE].set(1.0)


def concentrated(sal, *, share=0.5, tolerance=1.0):
    sal = np.asarray(sal)[..., 0]
    sal = sal - sal.min(axis=(1, 2), keepdims=True)  # RISE has a large constant floor
    assert sal.shape == (2, H, H) and np.all(np.isfinite(sal))
    assert pg.pointing_hits(sal, np.array([BOX, BOX]), tolerance=tolerance).all()
    assert (pg.mass_in_boxes(sal, np.array([BOX, BOX])) > share).all(), pg.mass_in_boxes(
        sal, np.array([BOX, BOX])
    )


KEY = jax.random.key(0)
CASES = {
    "occlusion": (E.occlusion, dict(patch=4, stride=2, reference=0.0), 0.5),
    "rise": (E.rise, dict(masks=400, cells=4, batch=100, key=KEY), 0.2),  # box share: 0.1
    "meaningful_deletion": (E.meaningful_perturbation,
                            dict(steps=40, mask_size=12, reference=0.0, scores="raw"), 0.45),
    "meaningful_preservation": (E.meaningful_perturbation,
                                dict(mode="preservation", steps=40, mask_size=12, reference=0.0,
                                     l1=0.05, scores="raw"), 0.45),
    "extremal": (E.extremal_perturbation,
                 dict(steps=40, step=2, sigma=1.0, areas=(0.03, 0.06), reference=0.0), 0.5),
    "dssr": (E.dssr, dict(steps=40, key=KEY), 0.5),
    "dssr_plus": (E.dssr_plus, dict(steps=40, key=KEY, max_pool_size=3, max_pool_pad=1,
                                    avg_pool_size=3), 0.5),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_map_concentrates_on_the_region(name, images):
    fn, kw, share = CASES[name]
    concentrated(fn(region_model, images, 0, **kw), share=share)


def test_dssr_follows_adams_unit_steps_on_a_constant_model(images):
    # A constant output has zero score gradient: each mask pixel sees the constant
    # gradient -lambda, so bias-corrected Adam moves it by exactly lr per step.
    def const(x):
        return jnp.zeros((x.shape[0], 2), x.dtype)

    sal = E.dssr(const, images, 0, steps=4, lr=0.1, reference=0.0, chunk=4)
    np.testing.assert_allclose(np.asarray(sal), 0.6, atol=1e-5)  # Adam's eps
    sal = E.dssr(const, images, 0, steps=12, lr=0.1, reference=0.0, chunk=4)  # same compiled chunk
    np.testing.assert_allclose(np.asarray(sal), 0.0, atol=1e-12)  # clipped at m = 1


def test_dssr_two_stage_lambda(images):
    # Scores of x(1 - m) above theta: the large lambda; below: the small one.
    # steps as in CASES["dssr"], so the compiled scan is shared
    _, hist = E.dssr(region_model, images, 0, steps=40, key=KEY, return_history=True)
    kept = np.asarray(hist[1])[..., 1]
    assert kept.shape == (2, 40)
    assert (kept[:, 0] > 0.9).all() and (kept[:, -1] > 0.3).all()  # stays faithful


def test_params_and_plain_function_agree():
    import jaxsal
    from jaxsal.models.small_cnn import SmallCNN
    from jaxsal.params import init_module

    p = init_module(SmallCNN(widths=(4, "M", 8)), jax.random.key(1))  # tiny: cheap to compile
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 1), jnp.float32)
    a = E.occlusion(p, x, 3, patch=32, stride=32)
    b = E.occlusion(lambda z: jaxsal.logits(p, z), x, 3, patch=32, stride=32)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_errors_name_the_fix(images):
    with pytest.raises(ValueError, match="PRNG key"):
        E.rise(region_model, images, 0)
    with pytest.raises(ValueError, match="multiple of batch"):
        E.rise(region_model, images, 0, key=KEY, masks=150, batch=100)
    with pytest.raises(ValueError, match="deletion"):
        E.meaningful_perturbation(region_model, images, 0, mode="keep")
    with pytest.raises(TypeError, match="noise.*needs a PRNG key"):
        E.dssr(region_model, images, 0, steps=1)  # uniform noise reference without a key
    with pytest.raises(ValueError, match="NHWC"):
        E.occlusion(region_model, images[0], 0)
    with pytest.raises(ValueError, match="scores"):
        E.occlusion(region_model, images, 0, scores="probs")
