"""`ModelParams`: what every interpreter takes as `params`.

It bundles a model's (static) architecture with its arrays, as one pytree. So
`jaxsal.gradcam(params, x, c)` needs no separate model argument, `jax.grad`
of any function of `params` returns a `ModelParams` of gradients, and
`jax.jit` retraces only when the architecture changes.

The architecture is one of three kinds (`ModelSpec.kind`):

- "linen": a Flax Linen module (jaxsal's torchvision ports are Linen
  modules), `params` its "params" collection, `state` the others
  (`{"batch_stats": ...}`);
- "nnx": a Flax NNX module, split into its graph definition (the
  `module` field), its `nnx.Param` state (`params`) and the rest (`state`);
- "function": a plain function `f(x) -> logits` or `f(params, x) -> logits`.

`jaxsal.wrap` builds the last two and wraps a user's own Linen module;
`jaxsal.init`, `jaxsal.load` and `weights_convert.from_torchvision` give
jaxsal's own architectures. Two choices belong to the model and travel with
it: beta-smoothing (`with_beta`) and the convolution backend (`with_conv`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxsal.graph._conv import check_conv, default_conv
from jaxsal.models.registry import ARCHITECTURES, arch_of, build_module

KINDS = ("linen", "nnx", "function")
PRECISIONS = (None, "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The static description of a model (part of the pytree structure).

    Attributes:
      kind: "linen", "nnx" or "function".
      num_classes: number of logits.
      in_channels: channels of the NHWC input.
      aliases: (alias, layer path) pairs, e.g. ("target", "layer4.1").
      conv: convolution backend ("auto", "xla", "patches", "matmul"; see
        `jaxsal.graph._conv`).
      arch: jaxsal's architecture name (`jaxsal.models.ARCHITECTURES`), or the
        registered name of another model class (`jaxsal.checkpoint.register_model`);
        None for user models.
      has_params: a "function" model takes `(params, x)` (else `(x)`).
      input_size: (H, W) of an example input, used to list layer names.
      call_kwargs: (name, value) pairs passed to every Linen `apply`.
      precision: None (compute in the arrays' dtype), or "bfloat16" / "float16":
        every convolution and matrix product takes its inputs in that dtype and
        accumulates in float32; everything else, the parameters and the maps
        stay float32 (`ModelParams.with_precision`).
    """

    kind: str
    num_classes: int
    in_channels: int
    aliases: tuple[tuple[str, str], ...] = ()
    conv: str = "auto"
    arch: str | None = None
    has_params: bool = True
    input_size: tuple[int, int] | None = None
    call_kwargs: tuple = ()
    precision: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        check_conv(self.conv)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}; e.g. "
                'params.with_precision("bfloat16")'
            )

    def trace_key(self) -> tuple:
        """What, besides the module and the arrays' shapes, changes the traced graph."""
        return (self.kind, self.has_params, self.call_kwargs)

    @property
    def alias_map(self) -> dict[str, str]:
        return dict(self.aliases)


def spec_of_module(module: nn.Module, *, conv: str | None = None) -> ModelSpec:
    """The `ModelSpec` of a Linen module that declares `num_classes` and `in_channels`."""
    missing = [a for a in ("num_classes", "in_channels") if not hasattr(module, a)]
    if missing:
        raise TypeError(
            f"{type(module).__name__} does not declare {' and '.join(missing)}; wrap a user "
            "module with jaxsal.wrap(module, variables, input_shape=(H, W, C)) instead"
        )
    aliases = module.layer_aliases() if hasattr(module, "layer_aliases") else {}
    try:
        arch = arch_of(module)
    except ValueError:
        arch = getattr(type(module), "jaxsal_name", None)
    return ModelSpec(
        kind="linen",
        num_classes=int(module.num_classes),
        in_channels=int(module.in_channels),
        aliases=tuple(aliases.items()),
        conv=default_conv() if conv is None else conv,
        arch=arch,
    )


@struct.dataclass
class ModelParams:
    """A model's arrays together with its (static) architecture.

    Attributes:
      module: the architecture: a Linen module, an NNX graph definition, or a
        function (static: part of the pytree structure).
      params: the trainable arrays.
      state: other arrays (BatchNorm statistics), `{}` when there are none.
      beta: None (ReLU), or the beta of beta-smoothing: every ReLU runs as
        softplus(beta x) / beta. An array leaf, so it may be traced.
      spec: the static description (`ModelSpec`); derived from a jaxsal-style
        Linen module (one with `num_classes` and `in_channels`) when omitted.
    """

    module: Any = struct.field(pytree_node=False)
    params: Any
    state: Any = struct.field(default_factory=dict)
    beta: Any = None
    spec: ModelSpec = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        if self.spec is None:
            object.__setattr__(self, "spec", spec_of_module(self.module))

    @property
    def variables(self) -> dict:
        """The Linen variables dict `{"params": ..., **state}`."""
        return {"params": self.params, **self.state}

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def in_channels(self) -> int:
        return self.spec.in_channels

    def with_beta(self, beta) -> ModelParams:
        """The same weights with ReLU replaced by softplus(beta x)/beta (None: plain ReLU).

        `beta` may be a traced value (e.g. a schedule inside `lax.scan`); it is
        stored as a 0-d array leaf of the parameters' dtype.
        """
        if beta is not None and not isinstance(beta, jax.core.Tracer):
            leaves = [a for a in jax.tree.leaves(self.params)
                      if hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)]  # fmt: skip
            beta = jnp.asarray(beta, leaves[0].dtype if leaves else None)
        return self.replace(beta=beta)

    def with_conv(self, conv: str) -> ModelParams:
        """The same model running its convolutions on another backend (`jaxsal.graph._conv`)."""
        return self.replace(spec=dataclasses.replace(self.spec, conv=check_conv(conv)))

    def with_precision(self, precision: str | None) -> ModelParams:
        """The same model computing its convolutions and matrix products in `precision`.

        "bfloat16" (or "float16", for GPUs): the matmul inputs in that dtype,
        accumulation in float32; parameters, activations between layers and
        maps stay in the arrays' own dtype (float32). None: full precision.
        Static under `jit`, like the conv backend.
        """
        return self.replace(spec=dataclasses.replace(self.spec, precision=precision))

    def astype(self, dtype) -> ModelParams:
        """All arrays cast to `dtype` (e.g. jnp.float64 for reference comparisons)."""
        cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return self.replace(
            params=jax.tree.map(cast, self.params), state=jax.tree.map(cast, self.state)
        )

    def apply(self, x: jax.Array) -> jax.Array:
        """The logits of `x`, unchecked (see `jaxsal.logits` for the checked call)."""
        from jaxsal.graph import evaluate

        return evaluate(self, x)[0]

    def train_apply(self, x: jax.Array) -> tuple[jax.Array, Any]:
        """Logits in training mode (BatchNorm on batch statistics) and the updated state.

        Only training from scratch needs this (`jaxsal.train.classification_loss(train=True)`);
        explanations always use inference mode.
        """
        from jaxsal.graph import evaluate

        logits, _, state = evaluate(self, x, train=True)
        return logits, state


def default_input_shape(params_or_module, size: int | None = None) -> tuple[int, int, int, int]:
    """An example input shape (1, H, W, C) for tracing the model."""
    spec = params_or_module.spec if isinstance(params_or_module, ModelParams) else None
    channels = spec.in_channels if spec else params_or_module.in_channels
    if spec is not None and spec.input_size is not None and size is None:
        return (1, *spec.input_size, channels)
    size = size or (96 if channels == 1 else 224)
    return (1, size, size, channels)


def init(
    arch: str,
    key: jax.Array,
    *,
    num_classes: int | None = None,
    beta: float | None = None,
    dtype=jnp.float32,
    conv: str | None = None,
) -> ModelParams:
    """Randomly initialised `ModelParams` for `arch` (a torchvision name or "small_cnn").

    Args:
      arch: one of `jaxsal.models.ARCHITECTURES`.
      key: PRNG key for the initialisers (a `jax.random.key`).
      num_classes: output classes (default: 1000 for torchvision models, 10 for small_cnn).
      beta: None for ReLU, or the softplus beta of beta-smoothing.
      dtype: dtype of the arrays.
      conv: convolution backend (default `$JAXSAL_CONV` or "auto").
    """
    from jaxsal.checks import check_key
    from jaxsal.hyper import check_init

    check_init(arch, num_classes=num_classes, beta=beta, dtype=dtype, conv=conv)
    key = check_key(key, "init")
    module = build_module(arch, num_classes=num_classes)
    params = init_module(module, key, dtype=dtype)
    if conv is not None:
        params = params.with_conv(conv)
    return params.with_beta(beta)


def init_module(module: nn.Module, key: jax.Array, *, dtype=jnp.float32) -> ModelParams:
    """`ModelParams` of a jaxsal-style Linen module, freshly initialised."""
    # A small input suffices: every model pools adaptively before its dense layers.
    # The initialisers' default float (float64 under jax_enable_x64) for x too; cast after.
    x = jnp.zeros(default_input_shape(module, 64), jnp.result_type(float))
    variables = jax.jit(module.init)(key, x)
    variables = jax.tree.map(lambda a: jnp.asarray(a, dtype), variables)
    params = variables.pop("params")
    return ModelParams(module=module, params=params, state=dict(variables))


__all__ = ["ARCHITECTURES", "ModelParams", "ModelSpec", "init", "init_module"]
