"""The forward pass with taps: activations and gradients at named layers.

A layer is named by its torchvision path (`layer4.1`, `features.33`,
`features.denseblock4`) or by an alias of the model (`target`: the fooling
paper's target layer). Taps and rules are applied from outside the model with
`flax.linen.intercept_methods`: a tap records a module's output and adds a
zero perturbation to it (its gradient is the gradient at the layer); a rule
replaces a module's computation (guided backprop, LRP).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal.params import ModelParams

# rule(module, args, kwargs, next_fun) -> output, or None to run the module unchanged.
Rule = Callable[[nn.Module, tuple, dict, Callable], Any]


class LayerNotFoundError(ValueError):
    pass


def module_name(module: nn.Module) -> str:
    return ".".join(module.path)


def resolve_layer(params: ModelParams, layer: str) -> str:
    """Maps an alias (e.g. "target") to the torchvision path; other names pass through."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a string such as 'target' or 'layer4', got {layer!r}")
    aliases = params.module.layer_aliases()
    return aliases.get(layer, layer)


def forward(
    params: ModelParams,
    x: jax.Array,
    *,
    taps: Sequence[str] = (),
    deltas: dict[str, jax.Array] | None = None,
    rule: Rule | None = None,
):
    """Runs the model; returns `(logits, activations)` with one activation per tap.

    Args:
      params: the model.
      x: NHWC input batch.
      taps: torchvision paths (already resolved) whose outputs are returned.
      deltas: optional arrays added to the tapped outputs (zeros, to take
        gradients at the layers).
      rule: optional per-module override (see `Rule`).
    """
    wanted = set(taps)
    acts: dict[str, jax.Array] = {}
    seen: list[str] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        module = context.module
        name = module_name(module)
        out = None
        if rule is not None:
            out = rule(module, args, kwargs, next_fun)
        if out is None:
            out = next_fun(*args, **kwargs)
        if name:
            seen.append(name)
        if name in wanted:
            if name in acts:
                raise ValueError(f'layer "{name}" is called twice; its output is ambiguous')
            acts[name] = out
            if deltas is not None and name in deltas:
                out = out + deltas[name]
        return out

    with nn.intercept_methods(interceptor):
        logits = params.module.apply(params.variables, x)
    missing = [t for t in taps if t not in acts]
    if missing:
        raise _not_found(params, missing[0], seen)
    return logits, acts


def _not_found(params: ModelParams, name: str, seen: list[str]) -> LayerNotFoundError:
    aliases = params.module.layer_aliases()
    top = sorted({s.split(".")[0] for s in seen}, key=[s.split(".")[0] for s in seen].index)
    close = difflib.get_close_matches(name, seen, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return LayerNotFoundError(
        f'layer "{name}" not found in {type(params.module).__name__}.{hint} '
        f"Top-level layers: {', '.join(top)}; aliases: {', '.join(aliases)}. "
        "Every module's torchvision path is accepted (e.g. "
        f'"{seen[len(seen) // 2]}"); jaxsal.layer_names(params) lists all {len(seen)}.'
    )


def layer_names(params: ModelParams, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Every layer that can be tapped, in execution order."""
    from jaxsal.params import default_input_shape

    shape = input_shape or default_input_shape(params.module, 64)
    names: list[str] = []

    def collect(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and context.module.path:
            names.append(module_name(context.module))
        return next_fun(*args, **kwargs)

    def run(x):
        with nn.intercept_methods(collect):
            return params.module.apply(params.variables, x)

    dtype = jax.tree.leaves(params.params)[0].dtype  # conv refuses mixed dtypes
    jax.eval_shape(run, jax.ShapeDtypeStruct(shape, dtype))
    return names


def select_class(logits: jax.Array, c: jax.Array) -> jax.Array:
    """logits[i, c[i]] for each image i."""
    return jnp.take_along_axis(logits, c[:, None], axis=1)[:, 0]


def logits(params: ModelParams, x: jax.Array) -> jax.Array:
    """The model's logits for the NHWC batch `x`."""
    from jaxsal.checks import check_input

    return params.module.apply(params.variables, check_input(params, x))


def features(params: ModelParams, x: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
    """Activations at the named layers (aliases allowed), keyed by the names given."""
    from jaxsal.checks import check_input

    resolved = [resolve_layer(params, n) for n in layers]
    _, acts = forward(params, check_input(params, x), taps=resolved)
    return {n: acts[r] for n, r in zip(layers, resolved)}


def class_grads(
    params: ModelParams,
    x: jax.Array,
    c: jax.Array,
    *,
    layers: Sequence[str] = (),
    wrt_input: bool = True,
    rule: Rule | None = None,
):
    """One forward and one backward pass from the class logit.

    Returns `(logits, input_grad, acts, layer_grads)`: the gradient of
    sum_i logits[i, c[i]] with respect to `x` (None unless `wrt_input`) and
    with respect to each named layer's output, and the layers' activations.
    """
    layers = tuple(layers)
    shapes = jax.eval_shape(lambda x: forward(params, x, taps=layers)[1], x)
    deltas = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}

    def objective(x, deltas):
        out, acts = forward(params, x, taps=layers, deltas=deltas, rule=rule)
        return select_class(out, c).sum(), (out, acts)

    argnums = (0, 1) if wrt_input else 1
    grads, (out, acts) = jax.grad(objective, argnums=argnums, has_aux=True)(x, deltas)
    gx, gl = grads if wrt_input else (None, grads)
    return out, gx, acts, gl
