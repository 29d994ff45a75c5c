"""What the throughput benchmark runs: each method on the jaxsal side and its PyTorch peers.

`jax_method` gives the jaxsal computation of a method with the benchmark's
settings (and, for methods that run in chunks through `lax.map`, the same
computation in one pass, whose XLA cost analysis counts every chunk);
`torch_fns` gives the PyTorch libraries' callables of the same method on
the same weights and inputs; `fooling_step_jax` the fooling study's training
step through the training engine (`jaxsal.train.make_step`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import numpy as np
import optax
import torch

import jaxsal
from benchmarks import torch_baselines as tb
from jaxsal.forward import resolve_layer, select_class
from jaxsal.lrp import relevance
from jaxsal.train import make_mesh, make_step, masked

NOISE = ("smoothgrad", "integrated_gradients", "gradient_shap")  # noise_batches only
PERTURBATION = ("scorecam", "occlusion")  # perturbation_archs and perturbation_batches only
STDEV = 0.5  # absolute SmoothGrad noise, the same for both libraries
SHAP_BASELINES = 4  # GradientShap draws its baselines from this many random images
ONE_PASS = 1 << 30  # a chunk larger than any channel or window count: no loop


def layer_for(arch: str, params) -> str:
    """The Grad-CAM / fooling layer as a torchvision path that exists in both libraries.

    The "target" alias, except DenseNet121, whose target (`denseblock4.cat15`,
    the input of the last dense layer) has no torch module: its block output.
    """
    if arch.startswith("densenet"):
        return "features.denseblock4"
    if arch == "resnet18":  # the tiny preset: an 8x8 map at 64 px
        return "layer2.1"
    return resolve_layer(params, "target")


def tasks(cfg: dict, arch: str, batch: int) -> list[tuple[str, str | None]]:
    """(method, composite) pairs to time for this architecture and batch size."""
    out = []
    for m in ["floor"] + cfg["methods"]:
        if m == "fooling":
            continue
        if m in NOISE and batch not in cfg["noise_batches"]:
            continue
        if m in PERTURBATION and (
            batch not in cfg["perturbation_batches"] or arch not in cfg["perturbation_archs"]
        ):
            continue
        if m == "lrp":
            out += [("lrp", comp) for comp in cfg["composites"]]
        else:
            out.append((m, None))
    return out


def passes(method: str, cfg: dict) -> int | None:
    """Model passes (forward + backward) per image, for the floor ratio; None: not comparable."""
    if method in ("smoothgrad", "integrated_gradients"):
        return cfg["samples"]
    if method == "gradient_shap":
        return cfg["shap_samples"]
    if method == "deeplift":
        return 2  # the input and its reference, one batch
    if method in PERTURBATION or method.startswith("fooling"):
        return None  # forward passes only / a training step
    return 1


def shap_baselines(cfg: dict) -> np.ndarray:
    """GradientShap's baseline images (NHWC float32), the same for both libraries."""
    rng = np.random.default_rng(2)
    shape = (SHAP_BASELINES, cfg["size"], cfg["size"], 3)
    return (0.5 * rng.standard_normal(shape)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class JaxMethod:
    """`fn(params, x, c, key, *extra)`; `one_pass`: the same without chunks (None: no chunks)."""

    fn: Callable
    extra: tuple = ()
    one_pass: Callable | None = None


def jax_method(method: str, cfg: dict, layer: str, composite: str | None = None) -> JaxMethod:
    """The jaxsal computation of `method` with the benchmark's settings."""
    if method == "floor":
        return JaxMethod(
            lambda p, x, c, k: jax.grad(lambda x: select_class(jaxsal.logits(p, x), c).sum())(x)
        )
    if method == "lrp":
        return JaxMethod(lambda p, x, c, k: relevance(p, x, c, composite=composite))
    if method == "gradient_shap":
        return JaxMethod(
            lambda p, x, c, k, b: jaxsal.gradient_shap(
                p, x, c, key=k, baselines=b, n_samples=cfg["shap_samples"]
            ),
            extra=(jax.numpy.asarray(shap_baselines(cfg)),),
        )
    core = getattr(jaxsal, method)
    chunk = cfg["chunk"]
    size, stride = cfg["occlusion"]
    hyper = {
        "smoothgrad": dict(samples=cfg["samples"], stdev=STDEV, chunk=chunk),
        "integrated_gradients": dict(steps=cfg["samples"], chunk=chunk),
        "gradcam": dict(layer=layer),
        "guided_gradcam": dict(layer=layer),
        "gradcam_plusplus": dict(layer=layer),
        "scorecam": dict(layer=layer, chunk=cfg["perturb_chunk"]),
        "occlusion": dict(
            sliding_window_shapes=(size,) * 2, strides=(stride,) * 2, chunk=cfg["perturb_chunk"]
        ),
    }.get(method, {})

    def run(h):
        return lambda p, x, c, k: core(p, x, c, key=k, **h)

    one_pass = None
    if hyper.get("chunk") is not None:
        whole = ONE_PASS if method == "scorecam" else None
        one_pass = run({**hyper, "chunk": whole})
    return JaxMethod(run(hyper), one_pass=one_pass)


def fooling_step_jax(params, method: str, layer: str, lr: float = 1e-5):
    """The fooling study's step (`make_step` on `jaxsal.fooling.loss`), its optimiser state, loss.

    One device (the benchmark compares one process with one PyTorch process);
    the step donates the optimiser state, so each timed call feeds the next.
    """
    fooling = jaxsal.fooling.Fooling(
        kind="location", method=method, lam=1.0, layer=layer, composite="epsilon_plus"
    )
    loss_fn = functools.partial(jaxsal.fooling.loss, fooling=fooling)
    tx = masked(optax.adam(lr), params)
    step = make_step(loss_fn, tx, mesh=make_mesh(jax.devices()[:1]))
    return step, tx.init(params), loss_fn


def torch_fns(method, composite, model, arch, xt, ct, layer, cfg) -> dict:
    """{library: callable} of the PyTorch implementations of one method."""
    if method == "floor":
        return {"torch": tb.floor(model, xt, ct)}
    if method == "lrp":
        return {"zennit": tb.zennit(model, arch, xt, ct, composite=composite)}
    if method in ("gradcam_plusplus", "scorecam"):
        cls = {"gradcam_plusplus": "GradCAMPlusPlus", "scorecam": "ScoreCAM"}[method]
        return {"pytorch-grad-cam": tb.grad_cam_library(model, xt, ct, layer=layer, cls=cls,
                                                        batch_size=cfg["perturb_chunk"])}  # fmt: skip
    if method in ("deeplift", "gradient_shap", "occlusion"):
        base = torch.from_numpy(shap_baselines(cfg).transpose(0, 3, 1, 2)).to(xt.device)
        return {"captum": tb.captum_reference(
            model, method, xt, ct, baselines=base, samples=cfg["shap_samples"],
            window=cfg["occlusion"], chunk=cfg["perturb_chunk"],
        )}  # fmt: skip
    fns = {"captum": tb.captum(model, method, xt, ct, layer=layer, samples=cfg["samples"],
                               chunk=cfg["chunk"], stdev=STDEV)}  # fmt: skip
    if method == "gradcam":
        fns["pytorch-grad-cam"] = tb.grad_cam_library(model, xt, ct, layer=layer)
    return fns
