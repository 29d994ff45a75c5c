"""The method table: every named map the studies use, with its interpreter, settings and heatmap.

A `Method` bundles an interpreter (any function with the interpreter
signature `fn(params, x, c, *, key=None, **hyper)`), its default
hyper-parameters and the heatmap normalisation that goes with it in the
fooling paper (`jaxsal.postprocess`). `method(name, **hyper)` looks one up
and overrides settings; every study, report and figure takes its methods
from here, so a method is defined once.

```python
m = jaxsal.methods.method("lrp_t", composite="epsilon_plus")
raw = m(params, x, c)            # the interpreter's raw output
h = m.heatmap_of(params, x, c)   # the paper's normalised map, (N, h, w, 1)
```

Methods are hashable (frozen dataclasses), so they can be static arguments of `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax

from jaxsal import explainers, interpreters, lrp, postprocess


def _input_map(h: jax.Array) -> jax.Array:
    """Default heatmap of an input-level attribution: sum_c |h|, per-sample min-max."""
    return postprocess.normalize(postprocess.reduce_channels(h, "abs_sum"))


def _sum_channels(h: jax.Array) -> jax.Array:
    return postprocess.reduce_channels(h, "sum")


def _identity(h: jax.Array) -> jax.Array:
    return h


@dataclasses.dataclass(frozen=True)
class Method:
    """One named map.

    Attributes:
      name: the table's name, e.g. "lrp_t".
      fn: the interpreter or explainer, `fn(params, x, c, *, key=None, **hyper)`.
      hyper: default hyper-parameters, (name, value) pairs.
      heatmap: raw output -> heatmap (N, h, w, 1): the fooling paper's
        normalisation for its methods (`jaxsal.postprocess`), sum_c |.| min-max
        for other input-level attributions.
      stochastic: the method needs a PRNG key.
      level: "input" (a map of the input's shape) or "layer" (a layer's resolution).
      description: one line for tables and --help.
    """

    name: str
    fn: Callable
    hyper: tuple[tuple[str, Any], ...] = ()
    heatmap: Callable = _input_map
    stochastic: bool = False
    level: str = "input"
    description: str = ""

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.hyper)

    def using(self, **hyper) -> Method:
        """The method with those of `hyper` that it takes overridden (the rest ignored)."""
        known = self.settings
        new = {**known, **{k: v for k, v in hyper.items() if k in known}}
        return dataclasses.replace(self, hyper=tuple(new.items()))

    def with_hyper(self, **hyper) -> Method:
        """The method with `hyper` overridden; names its function does not take are an error."""
        accepted = _keywords(self.fn)
        unknown = sorted(set(hyper) - accepted)
        if unknown:
            raise ValueError(
                f"method {self.name!r} has no setting {', '.join(unknown)}; its settings: "
                f"{', '.join(sorted(accepted)) or 'none'}"
            )
        return dataclasses.replace(self, hyper=tuple({**self.settings, **hyper}.items()))

    def __call__(self, params, x, c, *, key=None) -> jax.Array:
        """The raw output of the method (the interpreter's own return value)."""
        return self.fn(params, x, c, key=key, **self.settings)

    def heatmap_of(self, params, x, c, *, key=None) -> jax.Array:
        """The normalised heatmap `heatmap(raw)`, (N, h, w, 1)."""
        return self.heatmap(self(params, x, c, key=key))


@functools.cache
def _keywords(fn: Callable) -> frozenset[str]:
    params = inspect.signature(fn).parameters.values()
    return frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "key")


def _table() -> dict[str, Method]:
    i, pp = interpreters, postprocess
    layer = (("layer", "target"),)
    rows = [
        Method("gradcam", i.gradcam, layer, pp.gradcam_heatmap, level="layer",
               description="Grad-CAM at the target layer"),
        Method("lrp_t", lrp.attribute, layer + (("composite", "paper"),), pp.lrp_t_heatmap,
               level="layer", description="LRP relevance at the target layer (LRP_T)"),
        Method("lrp", lrp.attribute, (("composite", "paper"),), _sum_channels,
               description="LRP relevance at the input (the paper's composite)"),
        Method("simple_grad", i.simple_grad, (), pp.simple_grad_heatmap,
               description="gradient of the class logit"),
        Method("simple_grad_t", i.simple_grad_t, layer, pp.simple_grad_t_heatmap, level="layer",
               description="gradient at the target layer (SimpleGrad_T)"),
        Method("smoothgrad", i.smoothgrad, (("samples", 50), ("noise_level", 0.15)),
               pp.simple_grad_heatmap, stochastic=True, description="SmoothGrad of the gradient"),
        Method("vargrad", i.vargrad, (("samples", 25), ("noise_level", 0.15)), stochastic=True,
               description="VarGrad of the gradient"),
        Method("input_x_grad", i.input_x_grad, description="gradient x input"),
        Method("integrated_gradients", i.integrated_gradients, (("steps", 50),),
               description="Integrated Gradients from a zero baseline"),
        Method("guided_backprop", i.guided_backprop, description="Guided Backprop"),
        Method("deconvnet", i.deconvnet, description="DeconvNet"),
        Method("guided_gradcam", i.guided_gradcam, layer, description="Guided Grad-CAM"),
    ]  # fmt: skip
    cam_like = (("gradcam_plusplus", i.gradcam_plusplus, "Grad-CAM++"),
                ("xgradcam", i.xgradcam, "XGrad-CAM"), ("hirescam", i.hirescam, "HiResCAM"),
                ("layercam", i.layercam, "LayerCAM"), ("eigencam", i.eigencam, "Eigen-CAM"),
                ("scorecam", i.scorecam, "Score-CAM"), ("ablationcam", i.ablationcam,
                                                          "Ablation-CAM"))  # fmt: skip
    for name, fn, title in cam_like:
        rows.append(Method(name, fn, layer, pp.gradcam_heatmap, level="layer",
                           description=f"{title} at the target layer"))  # fmt: skip
    rows += [
        Method("deeplift", i.deeplift, description="DeepLIFT (rescale rule), zero baseline"),
        Method("gradient_shap", i.gradient_shap, (("n_samples", 5), ("stdevs", 0.0)),
               stochastic=True, description="GradientShap, zero baseline"),
        Method("guided_ig", i.guided_ig, description="Guided Integrated Gradients"),
        Method("blur_ig", i.blur_ig, description="Blur Integrated Gradients"),
        Method("sliding_occlusion", i.occlusion,
               description="Occlusion with sliding windows (Captum's)"),
    ]  # fmt: skip
    for name in lrp.COMPOSITES:
        if name != "paper":
            rows.append(Method(f"lrp_{name}", lrp.attribute, (("composite", name),),
                               description=f"LRP, {name} composite"))  # fmt: skip
    e = explainers
    for name, fn in (("occlusion", e.occlusion), ("rise", e.rise),
                     ("meaningful_perturbation", e.meaningful_perturbation),
                     ("extremal_perturbation", e.extremal_perturbation), ("dssr", e.dssr),
                     ("dssr_plus", e.dssr_plus)):  # fmt: skip
        rows.append(Method(name, fn, (), _identity, stochastic=name != "occlusion",
                           description=f"perturbation explainer: {name}"))  # fmt: skip
    return {m.name: m for m in rows}


METHODS: dict[str, Method] = _table()


def method(name: str | Method, **hyper) -> Method:
    """The method called `name` (or a `Method` as given), with `hyper` overridden.

    Raises:
      ValueError: an unknown name (the message lists the table) or setting.
    """
    if isinstance(name, Method):
        base = name
    elif name in METHODS:
        base = METHODS[name]
    else:
        raise ValueError(f"unknown method {name!r}; the table has: {', '.join(METHODS)}")
    return base.with_hyper(**hyper) if hyper else base


__all__ = ["METHODS", "Method", "method"]
