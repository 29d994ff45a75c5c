"""Guided IG, Blur IG and XRAI against PAIR's `saliency` 0.2.1, in float64.

PAIR's methods are numpy code around a `call_model_function`; here that
function returns jaxsal's own input gradients (`jaxsal.simple_grad`, float64)
of the same converted torchvision model, so both sides integrate identical
gradients and the comparison isolates the algorithms: paths, blur kernels,
quadrature, segmentation and the greedy region selection. Models: torchvision
VGG16 and ResNet50 with random weights (as in tests/test_cams.py), 32 px,
two images explained one at a time by PAIR and as one batch by jaxsal, through
an explicit `jax.jit`; relative error `max|ours - ref| / max|ref| < 1e-8`.

PAIR 0.2.1 needs two patches here, neither of which changes its algorithm:
Guided IG calls `np.quantile(..., interpolation="lower")`, a keyword numpy 2
removed (renamed `method`), and its Integrated Gradients (XRAI's default
attribution) accumulates in float32 (`np.zeros_like(x, dtype=np.float32)`),
which is made float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import saliency.core as pair
import saliency.core.guided_ig as pair_guided_ig
import saliency.core.integrated_gradients as pair_ig
import saliency.core.xrai as pair_xrai
from test_cams import Float64Numpy, build, jitted
from test_interpreters import fd_errors, images, random_params

import jaxsal
from jaxsal.interpreters.pair import blur_ig, guided_ig
from jaxsal.interpreters.xrai import xrai, xrai_segments

TOL = 1e-8
CLASSES = np.array([3, 7])


class Numpy2Quantile:
    """numpy, with `quantile(..., interpolation=m)` meaning numpy 2's `method=m`."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def quantile(a, q, interpolation="linear", **kwargs):
        return np.quantile(a, q, method=interpolation, **kwargs)


@pytest.fixture(autouse=True)
def pair_patches(monkeypatch):
    monkeypatch.setattr(pair_guided_ig, "np", Numpy2Quantile())
    monkeypatch.setattr(pair_ig, "np", Float64Numpy())


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def case(request):
    """(params, 32 px images); the float64 port of tests/test_cams.py's torchvision model."""
    full = build(request.param)
    return full.params, np.ascontiguousarray(full.x[:, ::2, ::2])


def model_function(params, c: int):
    """PAIR's `call_model_function`: jaxsal's input gradients of class c, float64."""

    def call(x_batch, call_model_args=None, expected_keys=None):
        classes = np.full(len(x_batch), c)
        grads = jaxsal.simple_grad(params, np.asarray(x_batch, np.float64), classes)
        return {pair.INPUT_OUTPUT_GRADIENTS: np.asarray(grads)}

    return call


def per_image(params, x, explain) -> np.ndarray:
    """PAIR's `explain(i, image, call_model_function)` for each image i, stacked."""
    return np.stack(
        [explain(i, x[i], model_function(params, int(CLASSES[i]))) for i in range(len(x))]
    )


def relative_error(ours, ref) -> float:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    assert np.all(np.abs(ref).reshape(len(ref), -1).max(axis=1) > 0), "a reference map is zero"
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    print(f"relative error {err:.1e}")
    return err


def test_guided_ig(case):
    params, x = case
    steps = 8  # PAIR's default is 200; max_dist 0.02 < 1 / 8 keeps the path banded
    ref = per_image(params, x, lambda i, im, f: pair.GuidedIG().GetMask(im, f, x_steps=steps))
    ours = jitted(guided_ig, params, x, CLASSES, steps=steps)
    assert relative_error(ours, ref) < TOL


def test_blur_ig(case):
    params, x = case
    steps = 6
    ref = per_image(params, x, lambda i, im, f: pair.BlurIG().GetMask(im, f, steps=steps))
    ours = jitted(blur_ig, params, x, CLASSES, steps=steps, chunk=3)
    assert relative_error(ours, ref) < TOL  # ~1e-13: the forward difference over 0.01


def test_xrai_segments_are_pairs(case):
    _, x = case
    ours = xrai_segments(x)
    for i, im in enumerate(x):
        ref = pair_xrai._get_segments_felzenszwalb(im)
        assert len(ref) > 20
        assert all(np.array_equal(a, b) for a, b in zip(ref, ours[i]))
        assert not ours[i, len(ref) :].any()  # padding: empty masks


def test_xrai(case):
    """The default pipeline: IG from black and white baselines, then the full greedy XRAI."""
    params, x = case
    steps = 4
    segments = xrai_segments(x)
    options = pair_xrai.XRAIParameters(steps=steps)

    def explain(i, im, f):
        return pair.XRAI().GetMask(im, f, segments=list(segments[i]), extra_parameters=options)

    ref = per_image(params, x, explain)
    ours = jitted(xrai, params, x, CLASSES, segments=segments, steps=steps)[..., 0]
    assert len(np.unique(ref[0])) > 5  # several regions, not one flat map
    assert relative_error(ours, ref) < TOL


@pytest.mark.parametrize(
    ("algorithm", "area"), [("full", 0.4), ("fast", 1.0)], ids=["full-area0.4", "fast"]
)
def test_xrai_given_attribution(algorithm, area):
    """Both algorithms and the area threshold, on a given attribution (the model is not called)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 40, 40, 3))
    attribution = rng.normal(size=x.shape) + np.linspace(-1, 1, 40)[None, :, None, None]
    segments = xrai_segments(x)
    options = pair_xrai.XRAIParameters(area_threshold=area, algorithm=algorithm)
    ref = np.stack(
        [
            pair.XRAI().GetMask(x[i], None, segments=list(segments[i]),
                                base_attribution=attribution[i], extra_parameters=options)
            for i in range(2)
        ]
    )  # fmt: skip
    params = build("resnet50").params  # an RGB model for the input checks; not called
    ours = jitted(xrai, params, x, CLASSES, segments=segments, attribution=attribution,
                  algorithm=algorithm, area_threshold=area)  # fmt: skip
    assert len(np.unique(ref[0])) > 5
    assert relative_error(ours[..., 0], ref) < 1e-12


# ------------------------------------------------------------------ small CNN


@pytest.fixture(scope="module")
def small():
    return random_params("small_cnn", beta=10.0), images(2, 24), np.array([1, 4])


@pytest.mark.parametrize(
    ("method", "hyper"),
    [
        (guided_ig, {"steps": 4}),
        (blur_ig, {"steps": 4, "max_sigma": 8.0}),
        (xrai, {"steps": 2}),
    ],
    ids=["guided_ig", "blur_ig", "xrai"],
)
def test_second_order(small, method, hyper):
    """d/dparams of sum(map * w) against central differences (beta-smoothed model).

    Guided IG's path and XRAI's regions depend on the parameters only through
    discrete choices, constant for steps this small; the rest is smooth.
    """
    params, x, c = small
    if method is xrai:
        hyper = {**hyper, "segments": xrai_segments(x), "min_pixel_diff": 20}
    w = jax.random.uniform(jax.random.key(5), x.shape[:3] + (1,), x.dtype)

    def penalty(p):
        return jnp.sum(method(p, x, c, **hyper).sum(axis=-1, keepdims=True) * w)

    errors = fd_errors(penalty, params, h=1e-6)
    assert max(errors) < 1e-6, errors


def test_guided_ig_limits(small):
    """max_dist 0 is the straight line: a left Riemann sum of IG from the zero baseline."""
    params, x, c = small
    steps = 4
    ours = guided_ig(params, x, c, steps=steps, max_dist=0.0)
    alphas = np.arange(steps) / steps
    grads = [jaxsal.simple_grad(params, a * x, c) for a in alphas]
    np.testing.assert_allclose(ours, x * np.mean(grads, axis=0), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(
    ("method", "hyper", "match"),
    [
        (guided_ig, {"fraction": 0.0}, r"fraction must lie in \(0, 1\]"),
        (guided_ig, {"max_dist": 1.5}, r"max_dist must lie in \[0, 1\]"),
        (guided_ig, {"steps": 0}, r"steps must be at least 1, got 0; e\.g\. steps=200"),
        (blur_ig, {"steps": 10, "chunk": 3}, r"chunk=3 must divide the number of steps \(10\)"),
        (blur_ig, {"max_sigma": 0}, r"max_sigma must be a positive .* e\.g\. max_sigma=50"),
        (xrai, {}, r"xrai needs segments=.*xrai_segments\(x\)"),
        (xrai, {"segments": np.zeros((2, 5, 8, 8), bool)}, r"segments must have shape"),
        (xrai, {"segments": "ok", "algorithm": "slow"}, r'unknown algorithm "slow"'),
        (xrai, {"segments": "ok", "attribution": np.zeros((2, 3))}, r"attribution must have"),
        (xrai, {"segments": "ok", "min_pixel_diff": 0}, r"min_pixel_diff must be at least 1"),
    ],
)
def test_bad_hyper_parameters(small, method, hyper, match):
    params, x, c = small
    if isinstance(hyper.get("segments"), str):
        hyper = {**hyper, "segments": np.ones((2, 1, 24, 24), bool)}
    with pytest.raises(ValueError, match=match):
        method(params, x, c, **hyper)
