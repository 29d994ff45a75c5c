"""The one training step: `loss_fn(params, batch, frozen) -> (loss, aux)`, differentiated and applied.

Every training in jaxsal (the base models, the fooling fine-tunings, the
trustworthy-CNN layer, free adversarial training) is a loss of this one
signature:

- `params`: what is trained, a pytree (a `ModelParams`, or a tuple holding
  one and extra trained arrays such as an adversarial perturbation);
- `batch`: a dict of arrays, sharded on their leading axis;
- `frozen`: what stays fixed (the original model of a fooling, or None),
  replicated and never differentiated.

Which leaves are trained is decided by a mask (`trainable_mask`): by default
every leaf of `ModelParams.params` and every array outside a `ModelParams`,
never BatchNorm statistics or beta; optionally only the named layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsal.params import ModelParams
from jaxsal.train._mesh import AXIS, make_mesh

LossFn = Callable[[Any, Mapping[str, jax.Array], Any], tuple[jax.Array, dict]]


def _path_names(tree) -> list[str]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [".".join(str(getattr(k, "key", k)) for k in path) for path, _ in flat]


def _layer_flags(params: ModelParams, layers: Sequence[str]):
    names = _path_names(params.params)
    owned = {la: [n for n in names if n == la or n.startswith(la + ".")] for la in layers}
    empty = [la for la, hits in owned.items() if not hits]
    if empty:
        known = sorted({n.rsplit(".", 1)[0] for n in names})
        raise ValueError(
            f"layers {empty} hold no parameters; layers with parameters: {', '.join(known)}"
        )
    flags = [any(n == la or n.startswith(la + ".") for la in layers) for n in names]
    return jax.tree.unflatten(jax.tree.structure(params.params), flags)


def trainable_mask(tree: Any, layers: Sequence[str] | None = None):
    """A pytree of bools over `tree`: True for the leaves that are trained.

    Args:
      tree: a `ModelParams`, or any pytree holding `ModelParams` and other arrays.
      layers: module paths whose parameters are trained (e.g. ("head", "classifier"));
        None trains every `ModelParams.params` leaf. Arrays outside a `ModelParams`
        are always trained; BatchNorm statistics and beta never.

    Raises:
      ValueError: a layer owns no parameter (the message lists the layers that do).
    """

    def mark(node):
        if isinstance(node, ModelParams):
            flags = (jax.tree.map(lambda _: True, node.params) if layers is None
                     else _layer_flags(node, tuple(layers)))  # fmt: skip
            return node.replace(
                params=flags,
                state=jax.tree.map(lambda _: False, node.state),
                beta=None if node.beta is None else False,
            )
        return True

    return jax.tree.map(mark, tree, is_leaf=lambda n: isinstance(n, ModelParams))


def masked(tx: optax.GradientTransformation, tree: Any, layers: Sequence[str] | None = None):
    """`tx` on the trained leaves of `tree` (`trainable_mask`); zero updates elsewhere."""
    labels = jax.tree.map(lambda m: "train" if m else "freeze", trainable_mask(tree, layers))
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def make_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    project: Callable[[Any], Any] | None = None,
) -> Callable:
    """One jitted, data-parallel optimisation step.

    Args:
      loss_fn: `loss_fn(params, batch, frozen) -> (loss, aux)`, aux a dict of scalars
        (and optionally "state": the model's new non-trained state, e.g. BatchNorm's
        running statistics in training mode, installed after the update).
      tx: the optimiser of the whole `params` pytree (usually `masked(...)`).
      mesh: the data-parallel mesh (default: every device).
      project: optional map applied to the params after each update (e.g. a
        projection onto a ball).

    Returns:
      `step(params, opt_state, batch, frozen) -> (params, opt_state, aux)`: forward,
      loss, gradient (second order where the loss holds a saliency map) and update
      in one program. Batch arrays are sharded on their leading axis, everything
      else replicated; `opt_state` is donated. aux holds "loss" and loss_fn's aux.
    """
    mesh = make_mesh() if mesh is None else mesh
    rep = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P(AXIS))

    def step(params, opt_state, batch, frozen):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, frozen)
        state = aux.pop("state", None)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if state is not None:  # running statistics of a model trained in training mode
            params = params.replace(state=state)
        if project is not None:
            params = project(params)
        return params, opt_state, {"loss": loss, **aux}

    return jax.jit(
        step,
        in_shardings=(rep, rep, data, rep),
        out_shardings=(rep, rep, rep),
        donate_argnums=(1,),
    )
