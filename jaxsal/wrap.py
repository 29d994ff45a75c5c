"""`wrap`: the one way in for a user's own model.

```python
import jaxsal

params = jaxsal.wrap(linen_module, variables, input_shape=(32, 32, 3))   # Flax Linen
params = jaxsal.wrap(nnx_module, input_shape=(32, 32, 3))                # Flax NNX
params = jaxsal.wrap(f, input_shape=(32, 32, 3))                          # f(x) -> logits
params = jaxsal.wrap(f, weights, input_shape=(32, 32, 3))                 # f(weights, x)
cam = jaxsal.gradcam(params, x, c, layer="Conv_2")
```

The result is a `ModelParams` that every interpreter, explainer and the
training engine take. The number of classes is read from the logits' shape
(`jax.eval_shape` on one input of `input_shape`), layer names from the
module tree (a Linen module's `path`, an NNX module's attribute path) or from
`jaxsal.tap` points in a plain function. BatchNorm runs in inference mode
(running statistics), dropout is off: a Linen module whose `__call__` takes a
flag for that gets it through `call_kwargs` (e.g. `{"train": False}`); an NNX
module is put into `eval()` mode (on a copy; the user's module is untouched).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax

from jaxsal.graph._conv import check_conv, default_conv
from jaxsal.params import ModelParams, ModelSpec


def wrap(
    model,
    variables=None,
    *,
    input_shape: tuple[int, ...],
    call_kwargs: Mapping | None = None,
    aliases: Mapping[str, str] | None = None,
    conv: str | None = None,
    beta: float | None = None,
) -> ModelParams:
    """A user's model as a `ModelParams`.

    Args:
      model: a Flax Linen module (with `variables`), a Flax NNX module, or a
        function `f(x) -> logits` (or `f(variables, x) -> logits` when
        `variables` is given) of an NHWC batch.
      variables: the Linen variables dict (`{"params": ..., "batch_stats": ...}`),
        or the function's parameters (any pytree); None for NNX modules and
        parameter-free functions.
      input_shape: the shape of ONE input, (H, W, C) (a leading batch axis is
        ignored); C is checked on every call, H and W only serve to list layers.
      call_kwargs: keyword arguments of every Linen `apply` (e.g. `{"train": False}`).
      aliases: extra layer names, e.g. `{"target": "block3"}`.
      conv: convolution backend (default `$JAXSAL_CONV` or "auto").
      beta: beta-smoothing (every ReLU as softplus(beta x) / beta), default none.

    Returns:
      The `ModelParams`.

    Raises:
      TypeError: `model` is none of the three kinds, or the variables do not fit it.
      ValueError: the model does not map one input to a vector of logits.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise ValueError(
            f"input_shape must be (H, W, C) of one NHWC input, got {tuple(input_shape)}"
        )
    conv = default_conv() if conv is None else check_conv(conv)
    alias_pairs = tuple((str(k), str(v)) for k, v in (aliases or {}).items())
    kind, module, params, state, has_params = _split(model, variables, call_kwargs)
    spec = ModelSpec(kind=kind, num_classes=1, in_channels=shape[-1], aliases=alias_pairs,
                     conv=conv, has_params=has_params, input_size=shape[:2],
                     call_kwargs=tuple(sorted((call_kwargs or {}).items())))  # fmt: skip
    wrapped = ModelParams(module=module, params=params, state=state, spec=spec)
    try:
        out = _probe(wrapped, shape, _dtypes(params))
    except Exception as e:  # noqa: BLE001 - re-raised with what to check
        raise ValueError(
            f"running the wrapped {kind} model on one input of shape {shape} failed: "
            f"{type(e).__name__}: {e}. Check input_shape (H, W, C), the variables and "
            "call_kwargs"
        ) from e
    if out.ndim != 2 or out.shape[0] != 1:
        raise ValueError(
            f"the model must return logits of shape (N, classes); on one input it returned "
            f"shape {out.shape}"
        )
    spec = dataclasses.replace(spec, num_classes=int(out.shape[1]))
    return wrapped.replace(spec=spec).with_beta(beta)


def _dtypes(params) -> list:
    """Input dtypes to probe the model with: its parameters' float dtype or, for a
    function without parameters (weights closed over), float32 and then the default
    float (float64 under `jax_enable_x64`)."""
    leaves = [a for a in jax.tree.leaves(params)
              if hasattr(a, "dtype") and jax.numpy.issubdtype(a.dtype, jax.numpy.floating)]  # fmt: skip
    if leaves:
        return [leaves[0].dtype]
    return list(dict.fromkeys([jax.numpy.dtype("float32"), jax.numpy.result_type(float)]))


def _probe(wrapped, shape, dtypes):
    """The output shape of one input, trying each dtype in turn (the last error re-raised)."""
    for i, dtype in enumerate(dtypes):
        try:
            return jax.eval_shape(wrapped.apply, jax.ShapeDtypeStruct((1, *shape), dtype))
        except Exception:  # noqa: BLE001 - the next dtype may fit; the last error propagates
            if i == len(dtypes) - 1:
                raise


def _split(model, variables, call_kwargs):
    """(kind, module, params, state, has_params) of any supported model."""
    import flax.linen as nn
    from flax import nnx

    if isinstance(model, nn.Module):
        if not isinstance(variables, Mapping) or "params" not in variables:
            raise TypeError(
                "a Linen module needs its variables dict (from module.init), with a 'params' "
                f"entry: jaxsal.wrap(module, variables, input_shape=...); got {type(variables)}"
            )
        state = {k: v for k, v in variables.items() if k != "params"}
        return "linen", model, variables["params"], state, True
    if call_kwargs:
        raise TypeError("call_kwargs applies to Linen modules only")
    if isinstance(model, nnx.Module):
        if variables is not None:
            raise TypeError("an NNX module carries its own variables: jaxsal.wrap(model, ...)")
        model = nnx.clone(model)
        model.eval()
        graphdef, params, state = nnx.split(model, nnx.Param, ...)
        return "nnx", graphdef, params, state, True
    if callable(model):
        return "function", model, variables, {}, variables is not None
    raise TypeError(
        "jaxsal.wrap takes a Flax Linen module (with its variables), a Flax NNX module or a "
        f"function f(x) -> logits; got {type(model).__name__}"
    )
