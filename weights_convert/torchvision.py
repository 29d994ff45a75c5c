"""Strict conversion of torchvision `state_dict`s into jaxsal `ModelParams`.

The Flax ports use torchvision's module paths as their parameter tree, so a
tensor `layer4.1.conv2.weight` goes to `params["layer4"]["1"]["conv2"]["kernel"]`
(transposed OIHW -> HWIO). The expected tensors are derived from the Flax
model's own parameter shapes; every tensor of the state_dict must be used and
every parameter of the model filled, with matching shapes, or the conversion
fails with a list of the offending names (the first 20, then a count),
preceded by the architecture the state_dict does fit when it fits another.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jaxsal.models.registry import TORCHVISION_ARCHITECTURES, build_module
from jaxsal.params import ModelParams, default_input_shape

# Where each architecture's last dense layer lives (to read num_classes off the weights).
CLASSIFIER = {
    "vgg16": "classifier.6",
    "vgg19": "classifier.6",
    "resnet18": "fc",
    "resnet34": "fc",
    "resnet50": "fc",
    "densenet121": "classifier",
    "mobilenet_v2": "classifier.1",
}


class ConversionError(ValueError):
    """A state_dict that does not fit the architecture (the message lists every problem)."""


@dataclass(frozen=True)
class Target:
    """Where one torchvision tensor goes: collection, Flax path, and transform."""

    collection: str
    path: tuple[str, ...]
    shape: tuple[int, ...]  # torch layout
    transform: str  # "oihw_to_hwio", "transpose", "copy"


def _torch_shape(name: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    if name == "kernel" and len(shape) == 4:
        kh, kw, i, o = shape
        return (o, i, kh, kw), "oihw_to_hwio"
    if name == "kernel" and len(shape) == 2:
        return (shape[1], shape[0]), "transpose"
    return shape, "copy"


TORCH_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def expected_tensors(module) -> dict[str, Target]:
    """torchvision key -> Target, derived from the Flax model's parameter shapes."""
    shapes = jax.eval_shape(
        module.init, jax.random.key(0), jnp.zeros(default_input_shape(module, 64))
    )
    targets: dict[str, Target] = {}
    for (collection, *path), leaf in flatten_dict(shapes).items():
        *mod_path, name = path
        shape, transform = _torch_shape(name, tuple(leaf.shape))
        key = ".".join(mod_path) + "." + TORCH_NAMES[(collection, name)]
        targets[key] = Target(collection, tuple(path), shape, transform)
    return targets


def _to_numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def load_state_dict(source: str | Path | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state_dict from a mapping or a `.pth` file, as NumPy arrays.

    Args:
      source: a mapping of names to tensors (or arrays), or the path of a file
        written by `torch.save(model.state_dict(), path)`.

    Returns:
      The tensors as NumPy arrays, keyed by their torchvision names.

    Raises:
      ConversionError: if `source` is not a flat mapping of tensors (a training
        checkpoint, a pickled whole model).
    """
    if isinstance(source, (str, Path)):
        try:
            import torch
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "reading .pth files needs torch: pip install 'jaxsal[convert]'"
            ) from e
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (expected a .pth state_dict file)")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for bad files
            raise ConversionError(
                f"could not read {path} as a state_dict ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Save the weights with "
                "torch.save(model.state_dict(), path), not the whole model."
            ) from e
    if not isinstance(source, Mapping):
        raise ConversionError(
            f"expected a state_dict (a mapping of names to tensors), got {type(source).__name__}"
        )
    nested = [k for k, v in source.items() if isinstance(v, Mapping)]
    if nested:
        inner = "state_dict" if "state_dict" in nested else nested[0]
        raise ConversionError(
            f"this looks like a training checkpoint (mappings under {', '.join(map(repr, nested))}), "
            f"not a state_dict; pass checkpoint[{inner!r}] instead"
        )
    return {k: _to_numpy(v) for k, v in source.items()}


MAX_PROBLEMS = 20  # problems listed in a ConversionError; the rest are counted


def _num_classes_of(arch: str, sd: Mapping[str, np.ndarray]) -> int | None:
    w = sd.get(CLASSIFIER[arch] + ".weight")
    return int(w.shape[0]) if w is not None and w.ndim == 2 else None


@functools.cache
def _expected(arch: str, num_classes: int | None):
    module = build_module(arch, num_classes=num_classes)
    return module, expected_tensors(module)


def problems_of(arch: str, sd: Mapping[str, np.ndarray], num_classes: int | None = None):
    """Every mismatch between a state_dict and `arch`; returns `(problems, unexpected names)`.

    Args:
      num_classes: None reads it off the classifier's weight.
    """
    if num_classes is None:
        num_classes = _num_classes_of(arch, sd)
    _, targets = _expected(arch, num_classes)
    problems = []
    counters = {k for k in sd if k.endswith(".num_batches_tracked")}
    # BatchNorm's step counter is not a weight: skip it where the model has that BatchNorm.
    ignored = {k for k in counters if k.rsplit(".", 1)[0] + ".running_mean" in targets}
    unexpected = sorted(set(sd) - set(targets) - ignored)
    for k in unexpected:
        problems.append(f"unexpected (in checkpoint, not in model): {k} {tuple(sd[k].shape)}")
    for k in sorted(set(targets) - set(sd)):
        problems.append(f"missing (in model, not in checkpoint): {k} {targets[k].shape}")
    for k in sorted(set(targets) & set(sd)):
        if tuple(sd[k].shape) != targets[k].shape:
            problems.append(
                f"wrong shape: {k} is {tuple(sd[k].shape)} in the checkpoint, "
                f"the model needs {targets[k].shape}"
            )
    return problems, unexpected


def fitting_architectures(sd: Mapping[str, np.ndarray], exclude: str | None = None) -> list[str]:
    """The torchvision architectures that a state_dict fits exactly (classes read off it)."""
    out = []
    for arch in TORCHVISION_ARCHITECTURES:
        if arch != exclude and CLASSIFIER[arch] + ".weight" in sd and not problems_of(arch, sd)[0]:
            out.append(arch)
    return out


def _conversion_error(arch, sd, problems, unexpected, num_classes) -> ConversionError:
    n = len(problems)
    head = f"the state_dict does not fit {arch} ({n} problem" + "s" * (n != 1) + ")"
    fits = fitting_architectures(sd, exclude=arch)
    if fits:
        head += f"; this state_dict fits {' and '.join(fits)}: convert it as {fits[0]}"
    elif num_classes is not None and not problems_of(arch, sd)[0]:
        head += f"; it fits {arch} with num_classes={_num_classes_of(arch, sd)}"
    shown = problems[:MAX_PROBLEMS]
    if n > MAX_PROBLEMS:
        shown.append(f"... and {n - MAX_PROBLEMS} more")
    hint = ""
    if unexpected and all(k.startswith("module.") for k in unexpected):
        hint = (
            "\nEvery unexpected name starts with 'module.' (a DataParallel model): strip "
            "it with {k.removeprefix('module.'): v for k, v in state_dict.items()}."
        )
    return ConversionError(head + ":\n  " + "\n  ".join(shown) + hint)


def from_torchvision(
    arch: str,
    state_dict: str | Path | Mapping[str, Any],
    *,
    num_classes: int | None = None,
    beta: float | None = None,
    dtype=jnp.float32,
) -> ModelParams:
    """Converts a torchvision `state_dict` (mapping or `.pth` path) into `ModelParams`.

    Args:
      arch: torchvision name: vgg16, vgg19, resnet18, resnet34, resnet50,
        densenet121 or mobilenet_v2.
      state_dict: the tensors, e.g. `torchvision.models.resnet50(weights=...).state_dict()`.
      num_classes: read from the classifier's weight when None.
      beta: optional beta-smoothing of the converted model's ReLUs.
      dtype: dtype of the converted arrays (jnp.float64 needs jax_enable_x64).

    Raises:
      ConversionError: listing the missing, unexpected or wrongly shaped tensors
        (the first 20, then their count), after naming the architectures that the
        state_dict does fit, if any.
    """
    if arch not in TORCHVISION_ARCHITECTURES:
        raise ConversionError(
            f'unknown torchvision architecture "{arch}"; known: {", ".join(TORCHVISION_ARCHITECTURES)}'
        )
    if jnp.dtype(dtype) == jnp.float64 and not jax.config.jax_enable_x64:
        raise ConversionError(
            "dtype float64 needs 64-bit JAX: call jax.config.update('jax_enable_x64', True) "
            "first, or convert to float32"
        )
    sd = load_state_dict(state_dict)
    if num_classes is None:
        num_classes_used = _num_classes_of(arch, sd)
    else:
        num_classes_used = num_classes
    problems, unexpected = problems_of(arch, sd, num_classes_used)
    if problems:
        raise _conversion_error(arch, sd, problems, unexpected, num_classes)
    module, targets = _expected(arch, num_classes_used)

    flat = {}
    for k, t in targets.items():
        a = sd[k]
        if t.transform == "oihw_to_hwio":
            a = a.transpose(2, 3, 1, 0)
        elif t.transform == "transpose":
            a = a.T
        flat[(t.collection, *t.path)] = jnp.asarray(a, dtype)
    variables = unflatten_dict(flat)
    params = variables.pop("params")
    return ModelParams(module=module, params=params, state=variables).with_beta(beta)
