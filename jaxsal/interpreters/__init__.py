"""Interpreters, all with the signature `(params, x, c, *, key=None, **hyper)`.

Gradient methods (`gradient`, `noise`, `integrated`, `guided`), the CAM family
(`cam`, `cams`, `cams_perturbation`), reference-based attributions
(`deeplift`, `shap`), perturbation attributions (`ablation`) and PAIR
saliency's path methods (`pair`, `xrai`).
"""

from jaxsal.interpreters.ablation import feature_ablation, occlusion
from jaxsal.interpreters.base import Interpreter, interpreter
from jaxsal.interpreters.cam import gradcam, guided_gradcam
from jaxsal.interpreters.cams import (
    eigencam,
    gradcam_plusplus,
    hirescam,
    layercam,
    scale_cam,
    xgradcam,
)
from jaxsal.interpreters.cams_perturbation import ablationcam, scorecam
from jaxsal.interpreters.deeplift import deeplift, deeplift_shap
from jaxsal.interpreters.gradient import input_x_grad, simple_grad, simple_grad_t
from jaxsal.interpreters.guided import deconvnet, guided_backprop
from jaxsal.interpreters.integrated import integrated_gradients
from jaxsal.interpreters.noise import smoothgrad, vargrad
from jaxsal.interpreters.pair import blur_ig, guided_ig
from jaxsal.interpreters.shap import gradient_shap, kernel_shap, lime, shapley_value_sampling
from jaxsal.interpreters.xrai import xrai, xrai_segments

__all__ = [
    "Interpreter",
    "ablationcam",
    "blur_ig",
    "deconvnet",
    "deeplift",
    "deeplift_shap",
    "eigencam",
    "feature_ablation",
    "gradcam",
    "gradcam_plusplus",
    "gradient_shap",
    "guided_backprop",
    "guided_gradcam",
    "guided_ig",
    "hirescam",
    "input_x_grad",
    "integrated_gradients",
    "interpreter",
    "kernel_shap",
    "layercam",
    "lime",
    "occlusion",
    "scale_cam",
    "scorecam",
    "shapley_value_sampling",
    "simple_grad",
    "simple_grad_t",
    "smoothgrad",
    "vargrad",
    "xgradcam",
    "xrai",
    "xrai_segments",
]
