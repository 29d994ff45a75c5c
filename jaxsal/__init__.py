"""jaxsal: differentiable, compiled saliency maps for Flax ports of torchvision CNNs.

Every interpreter has the signature `method(params, x, c, *, key=None, **hyper)`
with `params` a `ModelParams` (from `init`, `load` or
`weights_convert.from_torchvision`), `x` an NHWC batch and `c` the class.
"""

from jaxsal import (
    data,
    explainers,
    fooling,
    metrics,
    models,
    pointing,
    postprocess,
    sanity,
    training,
    trust,
)
from jaxsal.checkpoint import load, save
from jaxsal.forward import LayerNotFoundError, features, layer_names, logits
from jaxsal.interpreters import (
    Interpreter,
    deconvnet,
    gradcam,
    guided_backprop,
    guided_gradcam,
    input_x_grad,
    integrated_gradients,
    simple_grad,
    simple_grad_t,
    smoothgrad,
    vargrad,
)
from jaxsal.lrp import lrp
from jaxsal.params import ModelParams, init

__all__ = [
    "Interpreter",
    "LayerNotFoundError",
    "ModelParams",
    "data",
    "deconvnet",
    "explainers",
    "features",
    "fooling",
    "gradcam",
    "guided_backprop",
    "guided_gradcam",
    "init",
    "input_x_grad",
    "integrated_gradients",
    "layer_names",
    "load",
    "logits",
    "lrp",
    "metrics",
    "models",
    "pointing",
    "postprocess",
    "sanity",
    "save",
    "simple_grad",
    "simple_grad_t",
    "training",
    "trust",
    "smoothgrad",
    "vargrad",
]
