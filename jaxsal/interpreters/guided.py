"""Guided Backprop and DeconvNet: modified backward passes through rectifiers.

The rectifiers' backward pass is replaced by a `jax.custom_vjp` whose backward
is plain `jnp`, so these maps can be differentiated again (second order).

References:
  Springenberg et al., Striving for simplicity: the all convolutional net (2015).
  Zeiler and Fergus, Visualizing and understanding convolutional networks (2014).
"""

from __future__ import annotations

import functools

import jax

from jaxsal.forward import class_grads
from jaxsal.interpreters.base import interpreter


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def modified_rectifier(act, mode, x):
    return act(x)


def _fwd(act, mode, x):
    return act(x), x


def _bwd(act, mode, x, g):
    if mode == "guided":  # the rectifier's own derivative, on positive gradients only
        _, vjp = jax.vjp(act, x)
        return vjp(jax.nn.relu(g))
    return (jax.nn.relu(g),)  # deconvnet: rectify the gradient, ignore the forward mask


modified_rectifier.defvjp(_fwd, _bwd)


def guided(act, x):
    """A rectifier whose backward pass lets only positive gradients through (Guided Backprop)."""
    return modified_rectifier(act, "guided", x)


def deconv(act, x):
    """A rectifier whose backward pass rectifies the gradient (DeconvNet)."""
    return modified_rectifier(act, "deconvnet", x)


def rectified_grads(params, x, c, rectifier, method: str, **kwargs):
    """`class_grads` with every ReLU's backward pass replaced; refuses unsupported operations.

    Any other nonlinearity would keep its ordinary gradient and the map would
    silently be a different method's, so models with one are refused.
    """
    from jaxsal.graph import analyse, trace_graph, unsupported

    graph = trace_graph(params, x)
    analysis = analyse(graph, params.spec.kind == "function")
    unsupported(analysis, method)
    if not any(layer.kind in ("relu", "relu6") for layer in analysis.layers):
        raise ValueError(
            f"{method} found no ReLU in the model (jax.nn.relu, jax.nn.relu6 or max(x, 0)); "
            "it modifies the backward pass of rectifiers, so it would equal the gradient here"
        )
    return class_grads(params, x, c, rectifier=rectifier, **kwargs)


@interpreter()
def guided_backprop(params, x, c, *, key=None):
    """Guided Backprop: only positive gradients pass back through rectifiers (shape of x)."""
    del key
    return rectified_grads(params, x, c, guided, "guided_backprop")[1]


@interpreter()
def deconvnet(params, x, c, *, key=None):
    """DeconvNet: rectifiers pass back the rectified gradient (shape of x)."""
    del key
    return rectified_grads(params, x, c, deconv, "deconvnet")[1]
