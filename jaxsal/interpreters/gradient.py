"""Gradient interpreters: SimpleGrad, gradient x input, SimpleGrad_T.

References:
  Simonyan et al., Deep inside convolutional networks (2014).
  Shrikumar et al., Not just a black box (2016) (gradient x input).
"""

from __future__ import annotations

from jaxsal.forward import class_grads, resolve_layer
from jaxsal.interpreters.base import interpreter


@interpreter()
def simple_grad(params, x, c, *, key=None):
    """The gradient of the class logit with respect to the input (signed; shape of x).

    Args:
      params: a `ModelParams`.
      x: NHWC batch.
      c: class index, an int or one per image.
      key: unused (the signature is shared by all interpreters).

    Returns:
      d logit_c / dx, shape of `x`.
    """
    del key
    return class_grads(params, x, c)[1]


@interpreter()
def input_x_grad(params, x, c, *, key=None):
    """Gradient times input, elementwise (shape of x)."""
    del key
    return x * class_grads(params, x, c)[1]


@interpreter(static=("layer",))
def simple_grad_t(params, x, c, *, key=None, layer: str = "target"):
    """The gradient of the class logit at a named layer's output (SimpleGrad_T).

    Args:
      layer: torchvision path or alias; default the fooling paper's target layer.

    Returns:
      The gradient, shape of the layer's output (N, h, w, channels).
    """
    del key
    name = resolve_layer(params, layer)
    return class_grads(params, x, c, layers=(name,), wrt_input=False)[3][name]
