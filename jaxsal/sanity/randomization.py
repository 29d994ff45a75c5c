"""Model and data randomisation tests of Adebayo et al., for any jaxsal model and interpreter.

A *layer* is a parameterised module (conv, linear, BatchNorm), named by its
torchvision path, in forward order (`parameter_layers`). Randomising a layer
replaces its subtree of `params` (and of the BatchNorm statistics) by the
subtree of a fresh `params.module.init`, so every layer gets the initialiser
its own module defines. One fresh draw serves all randomisations, so the
cascade's steps share their random weights, as in the paper.

A randomisation is a boolean mask over the layers (`cascading_masks`: the top
k layers, k = 0 .. L; `independent_masks`: one layer each); `randomized_maps`
runs an interpreter for every mask in one jitted `lax.map`, so a whole cascade
compiles once and keeps only two copies of the parameters in memory.

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim. Sanity checks for
  saliency maps. NeurIPS 2018, sections 4 (model randomisation) and 5 (data
  randomisation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.forward import layer_names
from jaxsal.params import ModelParams, init_module


def _subtree(tree, path: str):
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_leaf_layer(node) -> bool:
    return (
        isinstance(node, dict)
        and bool(node)
        and not any(isinstance(v, dict) for v in node.values())
    )


def parameter_layers(params: ModelParams) -> list[str]:
    """The parameterised layers (torchvision paths) in forward order, input first.

    Args:
      params: any jaxsal model.

    Returns:
      Paths such as ["features.0", "features.3", ..., "classifier"] (conv,
      linear and BatchNorm modules: every module whose parameters are arrays).
    """
    out = []
    for name in layer_names(params):
        if name not in out and _is_leaf_layer(_subtree(params.params, name)):
            out.append(name)
    return out


def _check_layers(params: ModelParams, layers: Sequence[str]) -> tuple[str, ...]:
    known = parameter_layers(params)
    bad = [n for n in layers if n not in known]
    if bad:
        raise ValueError(
            f'"{bad[0]}" is not a parameterised layer of {type(params.module).__name__}; '
            f"parameter_layers(params) gives: {', '.join(known)}"
        )
    return tuple(layers)


def fresh_params(params: ModelParams, key: jax.Array) -> ModelParams:
    """A new draw of every parameter from the model's own initialisers (same dtypes)."""
    fresh = init_module(params.module, key)
    cast = lambda new, old: jnp.asarray(new, old.dtype)  # noqa: E731
    return fresh.replace(
        params=jax.tree.map(cast, fresh.params, params.params),
        state=jax.tree.map(cast, fresh.state, params.state),
    )


def mix(params: ModelParams, fresh: ModelParams, layers: Sequence[str], mask: jax.Array):
    """`params` with the layers where `mask` is True taken from `fresh` (bit-exact elsewhere).

    Args:
      params: the trained model.
      fresh: a fresh draw of the same model (`fresh_params`).
      layers: the layer paths that `mask` refers to.
      mask: booleans, shape (len(layers),); may be traced.

    Returns:
      The mixed `ModelParams`.
    """
    index = {name: i for i, name in enumerate(layers)}

    def pick(name, old, new):
        i = index.get(name)
        return old if i is None else jnp.where(mask[i], new, old)

    return _merge(pick, params, fresh)


def _merge(pick: Callable, params: ModelParams, fresh: ModelParams) -> ModelParams:
    """Applies `pick(layer_path, old_leaf, new_leaf)` to every array of params and state."""

    def name(path):
        return ".".join(str(getattr(k, "key", k)) for k in path[:-1])

    def over(tree, new, skip):  # state paths start with the collection ("batch_stats")
        return jax.tree_util.tree_map_with_path(
            lambda path, a, b: pick(name(path[skip:]), a, b), tree, new
        )

    return params.replace(
        params=over(params.params, fresh.params, 0), state=over(params.state, fresh.state, 1)
    )


def randomize_layers(
    params: ModelParams, layers: Sequence[str], *, key: jax.Array, fresh: ModelParams | None = None
) -> ModelParams:
    """`params` with the named layers re-initialised by their own initialisers.

    Args:
      params: the model.
      layers: torchvision paths out of `parameter_layers(params)`.
      key: PRNG key of the fresh draw.
      fresh: an existing fresh draw (overrides `key`).

    Returns:
      The model with those layers' parameters (and BatchNorm statistics)
      replaced; every other array is the same object, bit for bit.
    """
    layers = _check_layers(params, layers)
    fresh = fresh_params(params, key) if fresh is None else fresh
    wanted = set(layers)

    return _merge(lambda name, old, new: new if name in wanted else old, params, fresh)


def cascading_masks(num_layers: int) -> np.ndarray:
    """Row k randomises the top k layers (k = 0 .. L): shape (L + 1, L), row 0 all False."""
    k = np.arange(num_layers + 1)[:, None]
    return np.arange(num_layers)[None, :] >= num_layers - k


def independent_masks(num_layers: int) -> np.ndarray:
    """Row i randomises layer i only: the identity, shape (L, L)."""
    return np.eye(num_layers, dtype=bool)


@partial(jax.jit, static_argnames=("explain", "layers"))
def _mapped(params, fresh, masks, x, c, key, *, explain, layers):
    return jax.lax.map(lambda m: explain(mix(params, fresh, layers, m), x, c, key), masks)


def randomized_maps(
    params: ModelParams,
    x: jax.Array,
    c: jax.Array,
    explain: Callable,
    masks: np.ndarray,
    *,
    key: jax.Array,
    layers: Sequence[str] | None = None,
    fresh: ModelParams | None = None,
) -> jax.Array:
    """An interpreter's maps for a stack of randomisations, in one jitted `lax.map`.

    Args:
      params: the trained model.
      x: NHWC batch.
      c: classes, shape (N,).
      explain: `explain(params, x, c, key) -> map`, traceable (e.g.
        `lambda p, x, c, k: jaxsal.smoothgrad(p, x, c, key=k)`); hashable,
        since it is a static argument of the jit (define it once, reuse it).
      masks: booleans (S, L): which layers each randomisation re-initialises
        (`cascading_masks`, `independent_masks`).
      key: PRNG key of the interpreter (the same for every row, so stochastic
        methods see the same noise), and of the fresh draw when `fresh` is None.
      layers: the L layer paths (default `parameter_layers(params)`).
      fresh: the fresh draw (default `fresh_params(params, jax.random.fold_in(key, 1))`).

    Returns:
      Maps of shape (S,) + the interpreter's output shape.
    """
    layers = tuple(parameter_layers(params) if layers is None else _check_layers(params, layers))
    masks = jnp.asarray(masks, bool)
    if masks.ndim != 2 or masks.shape[1] != len(layers):
        raise ValueError(f"masks must have shape (S, {len(layers)}), got {masks.shape}")
    fresh = fresh_params(params, jax.random.fold_in(key, 1)) if fresh is None else fresh
    return _mapped(params, fresh, masks, x, jnp.asarray(c), key, explain=explain, layers=layers)


def shuffled_labels(labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A random permutation of the labels (the data randomisation test's training targets)."""
    return np.random.default_rng(seed).permutation(np.asarray(labels))
