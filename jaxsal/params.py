"""`ModelParams`: what every interpreter takes as `params`.

It bundles the Linen module (static) with its parameters and BatchNorm
statistics (arrays), as one pytree. So `jaxsal.gradcam(params, x, c)` needs no
separate model argument, `jax.grad` of any function of `params` returns a
`ModelParams` of gradients, and `jax.jit` retraces only when the architecture
changes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxsal.models.registry import ARCHITECTURES, build_module


@struct.dataclass
class ModelParams:
    """A model's parameters together with its (static) architecture.

    Attributes:
      module: the Flax Linen module (static: part of the pytree structure).
      params: the `params` collection (trainable arrays).
      state: other collections, `{"batch_stats": ...}` for models with BatchNorm.
    """

    module: nn.Module = struct.field(pytree_node=False)
    params: Any
    state: Any = struct.field(default_factory=dict)

    @property
    def variables(self) -> dict:
        return {"params": self.params, **self.state}

    @property
    def num_classes(self) -> int:
        return self.module.num_classes

    @property
    def in_channels(self) -> int:
        return self.module.in_channels

    def with_beta(self, beta: float | None) -> ModelParams:
        """The same weights with ReLU replaced by softplus(beta x)/beta (None: plain ReLU)."""
        return self.replace(module=self.module.clone(beta=beta))

    def astype(self, dtype) -> ModelParams:
        """All arrays cast to `dtype` (e.g. jnp.float64 for reference comparisons)."""
        cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return self.replace(
            params=jax.tree.map(cast, self.params), state=jax.tree.map(cast, self.state)
        )


def default_input_shape(module: nn.Module, size: int | None = None) -> tuple[int, int, int, int]:
    size = size or (96 if module.in_channels == 1 else 224)
    return (1, size, size, module.in_channels)


def init(
    arch: str,
    key: jax.Array,
    *,
    num_classes: int | None = None,
    beta: float | None = None,
    dtype=jnp.float32,
) -> ModelParams:
    """Randomly initialised `ModelParams` for `arch` (a torchvision name or "small_cnn").

    Args:
      arch: one of `jaxsal.models.ARCHITECTURES`.
      key: PRNG key for the initialisers.
      num_classes: output classes (default: 1000 for torchvision models, 10 for small_cnn).
      beta: None for ReLU, or the softplus beta of beta-smoothing.
      dtype: dtype of the arrays.
    """
    module = build_module(arch, num_classes=num_classes, beta=beta)
    return init_module(module, key, dtype=dtype)


def init_module(module: nn.Module, key: jax.Array, *, dtype=jnp.float32) -> ModelParams:
    # A small input suffices: every model pools adaptively before its dense layers.
    # The initialisers' default float (float64 under jax_enable_x64) for x too; cast after.
    x = jnp.zeros(default_input_shape(module, 64), jnp.result_type(float))
    variables = jax.jit(module.init)(key, x)
    variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
    params = variables.pop("params")
    return ModelParams(module=module, params=params, state=dict(variables))


__all__ = ["ARCHITECTURES", "ModelParams", "init", "init_module"]
