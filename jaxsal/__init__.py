"""jaxsal: differentiable, compiled saliency maps for CNNs in JAX.

Every interpreter has the signature `method(params, x, c, *, key=None, **hyper)`
with `params` a `ModelParams` (from `init`, `load`,
`weights_convert.from_torchvision`, or `wrap` for a user's Flax Linen / NNX
model or plain function), `x` an NHWC batch and `c` the class.
"""

from jaxsal import (
    data,
    explainers,
    fooling,
    graph,
    lrp,
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
from jaxsal.graph import UnsupportedOperation, tap
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
from jaxsal.params import ModelParams, ModelSpec, init
from jaxsal.wrap import wrap

__all__ = [
    "Interpreter",
    "LayerNotFoundError",
    "ModelParams",
    "ModelSpec",
    "UnsupportedOperation",
    "data",
    "deconvnet",
    "explainers",
    "features",
    "fooling",
    "gradcam",
    "graph",
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
    "smoothgrad",
    "tap",
    "training",
    "trust",
    "vargrad",
    "wrap",
]
