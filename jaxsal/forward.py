"""The forward pass with taps: activations and gradients at named layers.

A layer is named by its module path (`layer4.1`, `features.33`,
`features.denseblock4` for jaxsal's torchvision ports; `Conv_0`, `block1.conv`
for a user's Flax model), by a `jaxsal.tap` name in a plain function, or by
an alias of the model (`target`: the fooling paper's target layer). Taps,
rules and substitutions are applied by the graph evaluator
(`jaxsal.graph.evaluate`) to the traced operations of any model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxsal.graph import LayerNotFoundError, evaluate
from jaxsal.graph import layer_names as _graph_layer_names
from jaxsal.params import ModelParams, default_input_shape

__all__ = [
    "LayerNotFoundError",
    "class_grads",
    "features",
    "forward",
    "layer_names",
    "logits",
    "resolve_layer",
    "select_class",
]


def resolve_layer(params: ModelParams, layer: str) -> str:
    """Maps an alias (e.g. "target") to the layer's path; other names pass through."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a string such as 'target' or 'layer4', got {layer!r}")
    return params.spec.alias_map.get(layer, layer)


def forward(
    params: ModelParams,
    x: jax.Array,
    *,
    taps: Sequence[str] = (),
    deltas: dict[str, jax.Array] | None = None,
    rectifier: Callable | None = None,
    max_pool: Callable | None = None,
    lrp=None,
):
    """Runs the model; returns `(logits, activations)` with one activation per tap.

    Args:
      params: the model.
      x: NHWC input batch.
      taps: layer paths (already resolved) whose outputs are returned.
      deltas: optional arrays added to the tapped outputs (zeros, to take
        gradients at the layers).
      rectifier: optional `rectifier(act, x)` replacing every ReLU (Guided
        Backprop, DeconvNet).
      max_pool: optional `max_pool(pool, x)` replacing every max pooling.
      lrp: optional LRP plan factory (`jaxsal.lrp`).
    """
    return evaluate(params, x, taps=taps, deltas=deltas, rectifier=rectifier,
                    max_pool=max_pool, lrp=lrp)  # fmt: skip


def _dtype(params: ModelParams):
    leaves = jax.tree.leaves(params.params)
    return leaves[0].dtype if leaves else jnp.float32


def layer_names(params: ModelParams, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Every layer that can be tapped (module paths and taps), in call order.

    Args:
      params: the model.
      input_shape: an example input shape (N, H, W, C) (default: the model's).
    """
    shape = input_shape or default_input_shape(params, 64)
    return _graph_layer_names(params, jax.ShapeDtypeStruct(tuple(shape), _dtype(params)))


def select_class(logits: jax.Array, c: jax.Array) -> jax.Array:
    """logits[i, c[i]] for each image i."""
    return jnp.take_along_axis(logits, c[:, None], axis=1)[:, 0]


def logits(params: ModelParams, x: jax.Array) -> jax.Array:
    """The model's logits for the NHWC batch `x` (input checked)."""
    from jaxsal.checks import check_input

    return _logits(params, check_input(params, x))


_logits = jax.jit(lambda params, x: params.apply(x))


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
    rectifier: Callable | None = None,
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
        out, acts = forward(params, x, taps=layers, deltas=deltas, rectifier=rectifier)
        return select_class(out, c).sum(), (out, acts)

    argnums = (0, 1) if wrt_input else 1
    grads, (out, acts) = jax.grad(objective, argnums=argnums, has_aux=True)(x, deltas)
    gx, gl = grads if wrt_input else (None, grads)
    return out, gx, acts, gl
