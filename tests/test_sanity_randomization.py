"""Model randomisation: the right layers change, every other array stays bit-identical."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsal
from jaxsal.sanity import (
    cascading_masks,
    independent_masks,
    mix,
    parameter_layers,
    randomize_layers,
    randomized_maps,
    shuffled_labels,
)
from tests.torch_ref import torchvision


def leaves_by_layer(params):
    """{layer path: [arrays]} over params and state (state paths minus the collection)."""
    out = {}
    for tree, skip in ((params.params, 0), (params.state, 1)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            name = ".".join(str(k.key) for k in path[skip:-1])
            out.setdefault(name, []).append(np.asarray(leaf))
    return out


@pytest.fixture(scope="module")
def small():
    return jaxsal.init("small_cnn", jax.random.key(0))


def test_parameter_layers_follow_torchvision_module_order():
    tv = torchvision()
    model = tv.models.resnet18(num_classes=10)
    want = [n for n, m in model.named_modules() if n and not list(m.children())
            and any(True for _ in m.parameters(recurse=False))]  # fmt: skip
    module = jaxsal.models.build_module("resnet18", num_classes=10)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # no init compile
    params = jaxsal.ModelParams(module, variables.pop("params"), variables)
    assert parameter_layers(params) == want


def test_randomizing_a_layer_changes_exactly_that_layer(small):
    layers = parameter_layers(small)
    assert layers == ["features.0", "features.3", "features.6", "features.9", "features.11",
                      "classifier"]  # fmt: skip
    before = leaves_by_layer(small)
    key = jax.random.key(7)
    own = jaxsal.ModelParams(
        small.module, jax.jit(small.module.init)(key, jnp.zeros((1, 64, 64, 1)))["params"]
    )
    own = leaves_by_layer(own)  # the modules' own initialisers, run independently
    fresh = jaxsal.sanity.fresh_params(small, key)
    for name in layers:
        after = leaves_by_layer(randomize_layers(small, [name], key=key, fresh=fresh))
        for other, arrays in before.items():
            same = [a.tobytes() == b.tobytes() for a, b in zip(arrays, after[other])]
            assert all(same) if other != name else not all(same), (name, other)
        for got, want in zip(after[name], own[name]):  # kernel and bias of the fresh draw
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_traced_mask_is_bit_exact_and_cascades_from_the_top(small):
    layers = tuple(parameter_layers(small))
    fresh = randomize_layers(small, layers, key=jax.random.key(3))
    masks = cascading_masks(len(layers))
    assert masks.shape == (7, 6) and not masks[0].any() and masks[-1].all()
    np.testing.assert_array_equal(masks[2], [0, 0, 0, 0, 1, 1])
    assert (independent_masks(3) == np.eye(3)).all()
    mixed = jax.jit(lambda m: mix(small, fresh, layers, m))(jnp.asarray(masks[2]))
    want = randomize_layers(small, layers[-2:], key=jax.random.key(0), fresh=fresh)
    for a, b in zip(jax.tree.leaves(mixed), jax.tree.leaves(want)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_randomized_maps_equal_maps_of_each_randomised_model(small):
    x = jax.random.normal(jax.random.key(1), (2, 48, 48, 1), jnp.float32)
    c = jnp.array([3, 5])
    layers = parameter_layers(small)
    fresh = randomize_layers(small, layers, key=jax.random.key(2))
    masks = cascading_masks(len(layers))[[0, 1, 6]]
    got = randomized_maps(small, x, c, lambda p, x, c, k: jaxsal.simple_grad(p, x, c),
                          masks, key=jax.random.key(0), fresh=fresh)  # fmt: skip
    assert got.shape == (3, 2, 48, 48, 1)
    for row, k in zip(got, (0, 1, 6)):
        model = randomize_layers(small, layers[len(layers) - k :], key=jax.random.key(0),
                                 fresh=fresh) if k else small  # fmt: skip
        np.testing.assert_allclose(row, jaxsal.simple_grad(model, x, c), rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="not a parameterised layer"):
        randomize_layers(small, ["features.1"], key=jax.random.key(0))


def test_shuffled_labels_is_a_permutation():
    labels = np.arange(100) % 10
    out = shuffled_labels(labels, seed=1)
    assert sorted(out) == sorted(labels) and (out != labels).mean() > 0.5
