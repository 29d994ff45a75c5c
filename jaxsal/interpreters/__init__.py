"""Gradient-based interpreters, all with the signature `(params, x, c, *, key=None, ...)`."""

from jaxsal.interpreters.base import Interpreter, interpreter
from jaxsal.interpreters.cam import gradcam, guided_gradcam
from jaxsal.interpreters.gradient import input_x_grad, simple_grad, simple_grad_t
from jaxsal.interpreters.guided import deconvnet, guided_backprop
from jaxsal.interpreters.integrated import integrated_gradients
from jaxsal.interpreters.noise import smoothgrad, vargrad

__all__ = [
    "Interpreter",
    "deconvnet",
    "gradcam",
    "guided_backprop",
    "guided_gradcam",
    "input_x_grad",
    "integrated_gradients",
    "interpreter",
    "simple_grad",
    "simple_grad_t",
    "smoothgrad",
    "vargrad",
]
