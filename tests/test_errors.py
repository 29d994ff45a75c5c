"""Every bad argument of the interpreters, LRP, `init` and the explainers gives an error that
names the argument and the fix, before any computation; `jaxsal.checked` catches the value
errors that a plain `jax.jit` cannot see; out-of-memory becomes a `MemoryError` with advice.

The model is a two-conv SmallCNN in float64 (quick to compile).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsal
from jaxsal import explainers as E
from jaxsal.checks import checked
from jaxsal.hyper import check_init
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.params import init_module

F64 = jnp.float64
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def cnn():
    return init_module(SmallCNN(widths=(8, "M", 16)), jax.random.key(1), dtype=F64)


def images(n, size=12, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, size, size, 1), F64)


def raises(exc, text):
    """pytest.raises matching `text` literally (messages hold brackets and parentheses)."""
    return pytest.raises(exc, match=re.escape(text))


# ------------------------------------------------------------------ x, c, key

EMPTY = "x is an empty batch (N = 0, shape (0, 12, 12, 1)); pass at least one image"


@pytest.mark.parametrize(
    "call",
    [
        lambda p, x: jaxsal.simple_grad(p, x, 0),
        lambda p, x: jaxsal.gradcam(p, x, 0, layer="features.0"),
        lambda p, x: jaxsal.smoothgrad(p, x, 0, key=KEY, samples=2),
        lambda p, x: jaxsal.integrated_gradients(p, x, 0, steps=2),
        lambda p, x: jaxsal.lrp.attribute(p, x, 0),
    ],
    ids=["simple_grad", "gradcam", "smoothgrad", "integrated_gradients", "lrp"],
)
def test_empty_batch(cnn, call):
    with raises(ValueError, EMPTY):
        call(cnn, jnp.zeros((0, 12, 12, 1), F64))


def test_empty_batch_is_refused_under_jit_too(cnn):
    with raises(ValueError, EMPTY):
        jax.jit(lambda x: jaxsal.simple_grad(cnn, x, 0))(jnp.zeros((0, 12, 12, 1), F64))


@pytest.mark.parametrize("method", ["smoothgrad", "simple_grad", "lrp"])
def test_integer_key_names_the_fix(cnn, method):
    fn = {"smoothgrad": jaxsal.smoothgrad, "simple_grad": jaxsal.simple_grad,
          "lrp": jaxsal.lrp.attribute}[method]  # fmt: skip
    name = "lrp.attribute" if method == "lrp" else method
    with raises(
        TypeError,
        f"{name} needs a PRNG key such as key=jax.random.key(0), got int 0; a seed is not a "
        "key: pass key=jax.random.key(0)",
    ):
        fn(cnn, images(1), 0, key=0)


def test_key_array_and_legacy_key(cnn):
    with raises(ValueError, "smoothgrad needs one PRNG key, got a key array of shape (2,)"):
        jaxsal.smoothgrad(cnn, images(1), 0, key=jax.random.split(KEY), samples=2)
    with raises(TypeError, "got ndarray of dtype float64 and shape (2,)"):
        jaxsal.smoothgrad(cnn, images(1), 0, key=np.zeros(2), samples=2)
    legacy = jaxsal.smoothgrad(cnn, images(1), 0, key=jax.random.PRNGKey(3), samples=2)
    typed = jaxsal.smoothgrad(cnn, images(1), 0, key=jax.random.key(3), samples=2)
    np.testing.assert_array_equal(legacy, typed)


def test_init_key_and_arguments():
    with raises(TypeError, "init needs a PRNG key such as key=jax.random.key(0), got int 0"):
        jaxsal.init("small_cnn", 0)
    with raises(ValueError, "init: unknown architecture 'resnet5'; known architectures: vgg16"):
        jaxsal.init("resnet5", KEY)
    with raises(ValueError, "num_classes must be a positive int, got 0"):
        jaxsal.init("small_cnn", KEY, num_classes=0)
    # The checks `init` runs on its other arguments (beta, dtype, conv):
    with raises(ValueError, "init: beta must be None (ReLU) or a positive number"):
        check_init("small_cnn", beta=-1.0)
    with raises(TypeError, "init: dtype must be floating point (float32, float64"):
        check_init("small_cnn", dtype=jnp.int32)
    with raises(ValueError, "init: num_classes must be a positive int, got True"):
        check_init("small_cnn", num_classes=True)
    with jax.enable_x64(False), raises(ValueError, "dtype float64 needs 64-bit JAX"):
        check_init("small_cnn", dtype=jnp.float64)
    with raises(ValueError, 'unknown conv backend "fast"'):
        check_init("small_cnn", conv="fast")


def test_dtypes(cnn):
    with raises(TypeError, "x must be a floating-point array"):
        jaxsal.simple_grad(cnn, jnp.zeros((1, 12, 12, 1), jnp.int32), 0)
    with raises(TypeError, "x is float32 but the model's parameters are float64"):
        jaxsal.simple_grad(cnn, images(1).astype(jnp.float32), 0)
    mixed = cnn.replace(
        params={**cnn.params, "classifier": jax.tree.map(lambda a: a.astype(jnp.float32),
                                                         cnn.params["classifier"])}
    )  # fmt: skip
    with raises(TypeError, "the model's parameters mix dtypes (float32, float64); cast them"):
        jaxsal.simple_grad(mixed, images(1), 0)
    with raises(TypeError, "class index c must be an int or an int array, got float64; convert"):
        jaxsal.simple_grad(cnn, images(1), np.array([1.0]))
    with raises(TypeError, "class index c must be an int or an int array, got bool"):
        jaxsal.simple_grad(cnn, images(1), True)
    with raises(TypeError, "x must be an array of images (N, H, W, C), got str"):
        jaxsal.simple_grad(cnn, "image.png", 0)


# ------------------------------------------------------------------ hyper-parameters


@pytest.mark.parametrize("method", [jaxsal.smoothgrad, jaxsal.vargrad])
def test_noise_tunnel_arguments(cnn, method):
    name, x = method.__name__, images(2)
    with raises(ValueError, f"{name}: samples must be at least 1, got 0; e.g. samples=50"):
        method(cnn, x, 0, key=KEY, samples=0)
    with raises(TypeError, f"{name}: samples must be a Python int, got float 2.5"):
        method(cnn, x, 0, key=KEY, samples=2.5)
    with raises(ValueError, f"{name}: noise_level must be finite and >= 0, got -0.1"):
        method(cnn, x, 0, key=KEY, samples=2, noise_level=-0.1)
    with raises(ValueError, f"{name}: stdev must be finite and >= 0, got nan"):
        method(cnn, x, 0, key=KEY, samples=2, stdev=jnp.array([0.1, jnp.nan]))
    with raises(ValueError, f"{name}: stdev must be a scalar or one value per image, shape (2,)"):
        method(cnn, x, 0, key=KEY, samples=2, stdev=jnp.ones(3))
    with raises(
        ValueError,
        f"{name}: chunk=3 must divide the number of samples (10); choose one of 1, 2, 5, 10, "
        'or chunk="auto"',
    ):
        method(cnn, x, 0, key=KEY, samples=10, chunk=3)
    with raises(ValueError, f"{name}: chunk=0 must divide"):
        method(cnn, x, 0, key=KEY, samples=10, chunk=0)
    with raises(ValueError, f'{name}: chunk must be "auto", None (all samples at once) or an int'):
        method(cnn, x, 0, key=KEY, samples=10, chunk="big")
    with raises(TypeError, f"{name}: base must be an interpreter such as jaxsal.simple_grad"):
        method(cnn, x, 0, key=KEY, samples=2, base="simple_grad")


def test_integrated_gradients_arguments(cnn):
    x = images(2)
    with raises(ValueError, "integrated_gradients: steps must be at least 1, got 0"):
        jaxsal.integrated_gradients(cnn, x, 0, steps=0)
    with raises(ValueError, "steps must be at least 2 for riemann_trapezoid, got 1"):
        jaxsal.integrated_gradients(cnn, x, 0, steps=1, method="riemann_trapezoid")
    with raises(ValueError, 'integrated_gradients: unknown method "simpson"; choose one of'):
        jaxsal.integrated_gradients(cnn, x, 0, method="simpson")
    with raises(ValueError, "chunk=4 must divide the number of steps (10); choose one of 1, 2"):
        jaxsal.integrated_gradients(cnn, x, 0, steps=10, chunk=4)
    with raises(ValueError, "baseline of shape (3, 12, 12, 1) does not broadcast to x's shape"):
        jaxsal.integrated_gradients(cnn, x, 0, baseline=jnp.zeros((3, 12, 12, 1)))
    with raises(
        ValueError,
        "integrated_gradients: baseline has 144 non-finite values (NaN or inf); pass a finite",
    ):
        jaxsal.integrated_gradients(cnn, x, 0, baseline=jnp.full((1, 12, 12, 1), jnp.inf))
    # A baseline of another dtype is cast to x's (it used to promote the whole path).
    out = jaxsal.integrated_gradients(cnn, x, 0, steps=2, baseline=np.float32(0.5))
    assert out.dtype == F64


def test_cam_and_layer_arguments(cnn):
    x = images(1)
    with raises(TypeError, "gradcam got unknown keyword argument layers; its hyper-parameters "
                "are: layer, relu"):  # fmt: skip
        jaxsal.gradcam(cnn, x, 0, layers="features.0")
    with raises(TypeError, 'gradcam: layer must be a layer path or alias such as "target"'):
        jaxsal.gradcam(cnn, x, 0, layer=3)
    with raises(TypeError, "gradcam: relu must be True or False, got 'yes'"):
        jaxsal.gradcam(cnn, x, 0, relu="yes")
    with raises(ValueError, 'guided_gradcam: unknown interpolation "cubic"; choose one of '
                "nearest, bilinear"):  # fmt: skip
        jaxsal.guided_gradcam(cnn, x, 0, interpolation="cubic")
    with raises(TypeError, "simple_grad_t: layer must be a layer path"):
        jaxsal.simple_grad_t(cnn, x, 0, layer=None)


def test_lrp_arguments(cnn):
    x = images(1)
    with raises(TypeError, "lrp.attribute: layer must be a layer path or alias such as "
                '"target" or "layer4" or None for the input'):  # fmt: skip
        jaxsal.lrp.attribute(cnn, x, 0, layer=0)
    with raises(ValueError, "unknown composite 'best'"):
        jaxsal.lrp.attribute(cnn, x, 0, composite="best")
    with raises(TypeError, "canonizers must be Canonizer instances"):
        jaxsal.lrp.attribute(cnn, x, 0, canonizers=["merge"])
    with raises(ValueError, "class index 10 is out of range for a model with 10 classes"):
        jaxsal.lrp.attribute(cnn, x, 10)


# ------------------------------------------------------------------ explainers


def linear_fn(x):
    s = x.sum(axis=(1, 2, 3))
    return jnp.stack([s, -s, 2 * s], axis=-1)


def test_explainer_inputs(cnn):
    x = images(2)
    with raises(ValueError, EMPTY):
        E.occlusion(linear_fn, jnp.zeros((0, 12, 12, 1), F64), 0)
    with raises(ValueError, "class index 3 is out of range for a model with 3 classes"):
        E.occlusion(linear_fn, x, 3)
    with raises(ValueError, "x has 1 non-finite values (NaN or inf)"):
        E.occlusion(linear_fn, x.at[0, 0, 0, 0].set(jnp.nan), 0)
    with raises(ValueError, "model must map x of shape (2, 12, 12, 1) to (N, classes) = (2, K)"):
        E.occlusion(lambda z: z.sum(axis=(1, 2, 3)), x, 0)
    with raises(ValueError, "class index 12 is out of range for a model with 10 classes"):
        E.occlusion(cnn, x, 12)
    with raises(ValueError, 'unknown scores "prob"'):
        E.occlusion(linear_fn, x, 0, scores="prob")


def test_explainer_optimiser_arguments():
    x = images(1)
    with raises(ValueError, "MP deletion: steps must be at least 1, got 0; e.g. steps=300"):
        E.meaningful_perturbation(linear_fn, x, 0, steps=0)
    with raises(ValueError, "MP deletion: chunk must be at least 1, got 0"):
        E.meaningful_perturbation(linear_fn, x, 0, steps=2, chunk=0)
    with raises(ValueError, "MP deletion: lr (Adam's learning rate) must be a positive number"):
        E.meaningful_perturbation(linear_fn, x, 0, steps=2, lr=-0.1)
    with raises(TypeError, "rise needs a PRNG key such as key=jax.random.key(0), got int 0"):
        E.rise(linear_fn, x, 0, key=0)


# ------------------------------------------------------------------ checked mode


def _loss(params, x, c):
    return jaxsal.gradcam(params, x, c, layer="features.0").sum()


@pytest.mark.parametrize("c, bad", [(5000, 5000), (-1, -1), (np.array([3, 10]), 10)])
def test_checked_catches_a_class_out_of_range_under_jit(cnn, c, bad):
    x = images(2)
    msg = f"class index {bad} is out of range for a model with 10 classes (valid: 0 to 9)"
    with pytest.raises(ValueError) as eager:
        _loss(cnn, x, c)
    assert str(eager.value) == msg
    f = jax.jit(_loss)
    f(cnn, x, jnp.asarray(c))  # unchecked under jit: no error, a meaningless map
    with pytest.raises(ValueError) as err:
        checked(f)(cnn, x, jnp.asarray(c))
    assert str(err.value) == msg


def test_checked_catches_a_nan_input_under_jit(cnn):
    x = images(2).at[1, 2, 3, 0].set(jnp.nan)
    f = jax.jit(_loss)
    assert np.isnan(f(cnn, x, 0))
    with pytest.raises(ValueError) as err:
        checked(f)(cnn, x, 0)
    assert str(err.value) == "x has 1 non-finite values (NaN or inf); clean the input first"


def test_checked_passes_good_inputs_and_plain_jit_still_works(cnn):
    x = images(2)
    f = jax.jit(_loss)
    first = checked(f)(cnn, x, jnp.asarray([1, 2]))  # traced inside `checked` first
    again = f(cnn, x, jnp.asarray([1, 2]))  # then plainly: traced anew, without checks
    np.testing.assert_array_equal(first, again)
    g = jax.jit(jax.grad(_loss))  # second order under checked: d(map)/d(params)
    grads = checked(g)(cnn, x, jnp.asarray([1, 2]))
    np.testing.assert_array_equal(
        jax.tree.leaves(grads)[0], jax.tree.leaves(g(cnn, x, jnp.asarray([1, 2])))[0]
    )


def test_checked_traced_noise_level_and_unjitted_function(cnn):
    x = images(1)

    def sg(level):
        return jaxsal.smoothgrad(cnn, x, 0, key=KEY, samples=2, noise_level=level)

    with raises(ValueError, "smoothgrad: noise_level must be finite and >= 0, got -0.5"):
        checked(jax.jit(sg))(-0.5)
    np.testing.assert_allclose(checked(sg)(0.1), jax.jit(sg)(0.1), rtol=1e-12)


# ------------------------------------------------------------------ out of memory


def _oom(params, x, c, *, key=None):
    raise jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 10737418240 bytes."
    )


def test_out_of_memory_names_the_chunk_and_a_smaller_one(cnn):
    with raises(
        MemoryError,
        "smoothgrad ran out of device memory with chunk=10 (10 samples x 2 images = 20 images "
        "of 12x12x1 per pass); try chunk=5 (a divisor of samples=50). XLA: RESOURCE_EXHAUSTED",
    ):
        jaxsal.smoothgrad(cnn, images(2), 0, key=KEY, samples=50, chunk=10, base=_oom)
    with raises(MemoryError, "chunk is already 1; pass fewer than 2 images per call"):
        jaxsal.smoothgrad(cnn, images(2), 0, key=KEY, samples=50, chunk=1, base=_oom)


def test_other_runtime_errors_pass_through(cnn):
    def fail(params, x, c, *, key=None):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        jaxsal.vargrad(cnn, images(1), 0, key=KEY, samples=2, base=fail)
