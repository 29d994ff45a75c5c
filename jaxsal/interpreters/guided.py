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
from jaxsal.models.layers import ReLU, rectifier


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


def rectifier_rule(mode: str):
    """A forward rule that swaps every ReLU / ReLU6 backward pass for `mode`."""

    def rule(module, args, kwargs, next_fun):
        if isinstance(module, ReLU):  # ReLU6 included
            return modified_rectifier(rectifier(module.kind, module.beta), mode, *args)
        return None

    return rule


GUIDED = rectifier_rule("guided")
DECONV = rectifier_rule("deconvnet")


@interpreter()
def guided_backprop(params, x, c, *, key=None):
    """Guided Backprop: only positive gradients pass back through rectifiers (shape of x)."""
    del key
    return class_grads(params, x, c, rule=GUIDED)[1]


@interpreter()
def deconvnet(params, x, c, *, key=None):
    """DeconvNet: rectifiers pass back the rectified gradient (shape of x)."""
    del key
    return class_grads(params, x, c, rule=DECONV)[1]
