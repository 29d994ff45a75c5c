"""Model-agnostic perturbation explainers: they query only the model's output and its gradient.

Every explainer is `method(model, x, c, *, key=None, **hyper) -> (N, H, W, 1)`
with `model` a `jaxsal.ModelParams` or a plain function `f(x) -> (N, classes)`
(logits; pass `scores="raw"` if it returns probabilities already), `x` an NHWC
batch and `c` the class. Optimised masks use optax Adam inside `jax.lax.scan`,
vmapped over the batch, in chunks with an optional tqdm bar (`progress=True`).
"""

from jaxsal.explainers import references
from jaxsal.explainers._core import Model, as_model
from jaxsal.explainers.dssr import dssr, dssr_plus
from jaxsal.explainers.extremal import extremal_perturbation
from jaxsal.explainers.meaningful import meaningful_perturbation, total_variation
from jaxsal.explainers.occlusion import occlusion
from jaxsal.explainers.references import gaussian_blur
from jaxsal.explainers.rise import rise, rise_masks

__all__ = [
    "Model",
    "as_model",
    "dssr",
    "dssr_plus",
    "extremal_perturbation",
    "gaussian_blur",
    "meaningful_perturbation",
    "occlusion",
    "references",
    "rise",
    "rise_masks",
    "total_variation",
]
