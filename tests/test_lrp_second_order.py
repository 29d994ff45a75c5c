"""Second order: gradients of LRP_T penalties with respect to the parameters.

The gradient of the fooling paper's Location penalty on an LRP_T map (through
the rules' custom VJPs and the BatchNorm fold) must match central finite
differences along random directions in parameter space, in float64; and
`jax.jit(jax.grad(penalty))` must compile and run on the paper's three models
at 224 px.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torch_ref import torch_model

import jaxsal
from jaxsal.lrp import attribute as lrp
from jaxsal.postprocess import lrp_t_heatmap
from weights_convert import from_torchvision


def location_penalty(params, x, c, **lrp_args):
    """SPEC's Location penalty: mean (m - h)^2, m = 1 on a frame of width H // 7, 0 inside."""
    h = lrp_t_heatmap(lrp(params, x, c, **lrp_args))
    size = h.shape[1]
    k = size // 7
    m = np.ones((size, size))
    m[k : size - k, k : size - k] = 0.0
    return jnp.mean((jnp.asarray(m, h.dtype)[None, :, :, None] - h) ** 2)


def directions(tree, seed):
    """A random direction, each leaf scaled by that leaf's spread (relative perturbation)."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(a.shape) * (float(np.std(a)) + 1e-3) for a in leaves]
    return jax.tree.unflatten(treedef, out)


def vdot(a, b):
    return sum(float(jnp.vdot(u, v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize(
    "lrp_args",
    [
        {"composite": "paper", "layer": "layer3"},  # BatchNorm folded (default canonizer)
        {"composite": "epsilon_plus", "layer": "layer3", "canonizers": ()},  # BN passes
    ],
    ids=["paper-folded", "epsilon-plus-unfolded"],
)
def test_penalty_gradient_matches_finite_differences(lrp_args):
    params = from_torchvision("resnet18", torch_model("resnet18").state_dict(), dtype=jnp.float64)
    x = np.random.default_rng(0).standard_normal((2, 112, 112, 3))
    c = np.array([2, 7])
    penalty = jax.jit(lambda p: location_penalty(p, x, c, **lrp_args))
    grad = jax.jit(jax.grad(lambda p: location_penalty(p, x, c, **lrp_args)))(params)
    assert grad.params["conv1"]["kernel"].shape == params.params["conv1"]["kernel"].shape
    # LRP maps of random networks are only piecewise smooth (rectifier kinks, the
    # stabiliser's sign) with many units near a kink: steps of 1e-6 or more cross some.
    h = 1e-8
    for seed in (0, 1):
        v = directions(params, seed)
        up = jax.tree.map(lambda a, d: a + h * d, params, v)
        down = jax.tree.map(lambda a, d: a - h * d, params, v)
        fd = (float(penalty(up)) - float(penalty(down))) / (2 * h)
        ad = vdot(grad, v)
        print(f"FD check {lrp_args}: autodiff {ad:.10e}, central FD {fd:.10e}")
        assert abs(ad - fd) <= 1e-5 * abs(fd)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vgg19", "resnet50", "densenet121"])
def test_jit_grad_of_lrp_t_penalty_at_224(arch):
    """The paper's setting: jit(grad(Location penalty on LRP_T at the target layer))."""
    params = from_torchvision(arch, torch_model(arch).state_dict(), dtype=jnp.float32)
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)

    def penalty(p):
        # The top class, so that the target's relevance is not all negative (a flat map).
        c = jnp.argmax(jax.lax.stop_gradient(jaxsal.logits(p, x)), axis=-1)
        return location_penalty(p, x, c, composite="paper", layer="target")

    g = jax.jit(jax.grad(penalty))(params)
    leaves = jax.tree.leaves(g)
    assert all(a.dtype == jnp.float32 for a in leaves)
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in leaves)
    assert sum(float(jnp.abs(a).sum()) for a in leaves) > 0
