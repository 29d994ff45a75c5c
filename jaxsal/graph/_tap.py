"""`tap`: a named point in a model's computation, where jaxsal can read and perturb activations.

A tap is the identity. It is bound as a primitive of its own, `jaxsal_tap`,
so that it survives tracing into a jaxpr (also inside the user's own `jax.jit`
functions) and jaxsal's graph evaluator can find it there: to record the
activation (`jaxsal.features`), to take the gradient at it (Grad-CAM,
SimpleGrad_T) or to read relevance there (LRP_T). Outside jaxsal's evaluator
it costs nothing: it is the identity under `jit`, `grad`, `vmap` and
lowering.

jaxsal inserts taps at the output of every module of a Flax Linen or NNX
model; in a plain function the user marks points with `jaxsal.tap(name, x)`.
"""

from __future__ import annotations

import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

tap_p = Primitive("jaxsal_tap")
tap_p.def_impl(lambda x, *, name: x)
tap_p.def_abstract_eval(lambda x, *, name: x)
ad.deflinear2(tap_p, lambda ct, x, *, name: [ct])
batching.defvectorized(tap_p)
mlir.register_lowering(tap_p, lambda ctx, x, *, name: [x])


def tap(name: str, x: jax.Array) -> jax.Array:
    """Marks `x` as the layer `name` (the identity).

    Use it inside a plain function `f(x) -> logits` (or a Flax module) to make
    a point reachable by name: Grad-CAM, SimpleGrad_T, LRP_T and
    `jaxsal.features` then accept `layer=name`.

    Args:
      name: the layer's name (any string; unique within the model).
      x: an array.

    Returns:
      `x`, unchanged.

    Example:
      ```python
      def f(x):
          h = jax.nn.relu(conv(x))
          h = jaxsal.tap("features", h)
          return dense(h.mean(axis=(1, 2)))
      ```
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"tap needs a non-empty string name, got {name!r}")
    return tap_p.bind(jax.numpy.asarray(x), name=name)
