"""What every perturbation explainer shares: the model wrapper, input checks, the mask optimiser.

A model is either a `jaxsal.ModelParams` or a plain function `f(x) -> (N, K)`
(logits or probabilities): both are wrapped in `Model`, a pytree whose
parameters are traced by `jax.jit` while a plain function is a static field
(so a new function compiles anew, the same one is reused).

Masks are optimised by `optimize`: optax Adam on a per-image mask parameter,
clipped to [0, 1] after each step, inside `jax.lax.scan`, vmapped over the
batch of images. The scan runs in chunks, with a tqdm bar between chunks when
`progress=True`; each chunk is one compiled call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxsal.checks import check, check_batch, check_class, check_finite
from jaxsal.hyper import check_count
from jaxsal.params import ModelParams

SCORES = ("softmax", "log_softmax", "raw")


@struct.dataclass
class Model:
    """A classifier to explain: `Model(params)` or `Model(fn=f)`, called on an NHWC batch.

    Attributes:
      params: a `ModelParams`, or None when `fn` is given.
      fn: a plain function from an NHWC batch to (N, K) outputs.
      scores: what the explainers see: "softmax" (probabilities of the outputs,
        which are taken as logits), "log_softmax", or "raw" (the outputs as they
        are: logits, or probabilities when `fn` already returns them).
    """

    params: Any = None
    fn: Callable | None = struct.field(pytree_node=False, default=None)
    scores: str = struct.field(pytree_node=False, default="softmax")

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.fn is None:
            out = self.params.apply(x)
        else:
            out = self.fn(x)
        if self.scores == "softmax":
            return jax.nn.softmax(out, axis=-1)
        if self.scores == "log_softmax":
            return jax.nn.log_softmax(out, axis=-1)
        return out


def as_model(model, scores: str) -> Model:
    """Wraps a `ModelParams` or a callable; errors name what is wrong."""
    if scores not in SCORES:
        raise ValueError(f'unknown scores "{scores}"; use one of {", ".join(SCORES)}')
    if isinstance(model, Model):
        return model.replace(scores=scores)
    if isinstance(model, ModelParams):
        return Model(params=model, scores=scores)
    if callable(model):
        return Model(fn=model, scores=scores)
    raise TypeError(
        "model must be a jaxsal.ModelParams or a function f(x) -> (N, classes) outputs, got "
        f"{type(model).__name__}"
    )


def check_inputs(model: Model, x, c) -> tuple[jax.Array, jax.Array]:
    """`x` a finite, non-empty NHWC float batch, `c` an int or one valid class per image.

    Returns `(x, c)` with c of shape (N,). For a plain function the number of
    classes is read off its output shape (`jax.eval_shape`, nothing runs).
    """
    if model.params is not None:
        return check(model.params, x, c)
    x = jnp.asarray(x) if not isinstance(x, jax.core.Tracer) else x
    if x.ndim != 4:
        hint = " Add a batch axis with x[None]." if x.ndim == 3 else ""
        raise ValueError(f"x must be an NHWC batch (N, H, W, C), got shape {x.shape}.{hint}")
    check_batch(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be floating point, got {x.dtype}; use x.astype(jnp.float32)")
    out = jax.eval_shape(model.fn, jax.ShapeDtypeStruct(x.shape, x.dtype))
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != x.shape[0]:
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"model must map x of shape {tuple(x.shape)} to (N, classes) = ({x.shape[0]}, K) "
            f"outputs, got {got}; wrap it to return one row of scores per image"
        )
    check_finite(x)
    return x, check_class(None, x, c, num_classes=int(out.shape[1]))


def class_score(model: Model, x: jax.Array, c: jax.Array) -> jax.Array:
    """`model(x)[:, c]` for one image `x` (H, W, C) repeated as a batch (B, H, W, C)."""
    return model(x)[:, c]


def resize(m: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of a (..., h, w) mask with half-pixel centres (torch align_corners=False)."""
    return jax.image.resize(m, m.shape[:-2] + tuple(size), "linear", antialias=False)


def _chunk_sizes(steps: int, chunk: int | None) -> list[int]:
    chunk = steps if not chunk else min(chunk, steps)
    sizes = [chunk] * (steps // chunk)
    return sizes + ([steps % chunk] if steps % chunk else [])


@functools.partial(jax.jit, static_argnames=("objective", "n"))
def _run(objective, model, p, opt_state, data, hyper, t0, *, n):
    tx = optax.adam(hyper["lr"])
    grad = jax.value_and_grad(objective, argnums=1, has_aux=True)

    def per_image(p, s, d):
        def step(carry, t):
            p, s = carry
            (loss, aux), g = grad(model, p, d, hyper, t)
            updates, s = tx.update(g, s, p)
            return (jnp.clip(optax.apply_updates(p, updates), 0.0, 1.0), s), (loss, aux)

        (p, s), hist = jax.lax.scan(step, (p, s), t0 + jnp.arange(n))
        return p, s, hist

    return jax.vmap(per_image)(p, opt_state, data)


_init = jax.jit(jax.vmap(optax.scale_by_adam().init))


def optimize(
    objective: Callable,
    model: Model,
    p0: jax.Array,
    data: Any,
    hyper: dict[str, Any],
    *,
    steps: int,
    chunk: int | None = None,
    progress: bool = False,
    desc: str = "mask",
) -> tuple[jax.Array, dict[str, np.ndarray] | jax.Array]:
    """Minimises `objective` over one mask parameter per image with Adam, clipped to [0, 1].

    Args:
      objective: a module-level function `objective(model, p, d, hyper, t) ->
        (loss, aux)` for ONE image: `p` its mask parameter, `d` its slice of
        `data`, `t` the step; `aux` a scalar or pytree logged per step.
      model: the wrapped model (traced).
      p0: initial mask parameters, leading axis N.
      data: per-image arrays (leading axis N): image, class, reference, ...
      hyper: shared hyper-parameters (traced, so new values do not recompile);
        must hold "lr", Adam's learning rate.
      steps: iterations.
      chunk: iterations per compiled call (None: all at once); the progress bar
        advances between chunks.
      progress: show a tqdm bar (ignored under an outer `jax.jit`).
      desc: the bar's label.

    Returns:
      The final parameters (N, ...) and the per-step history (loss, aux), each (N, steps, ...).
    """
    check_count(steps, "steps", desc, example=300)
    if chunk is not None:
        check_count(chunk, "chunk", desc, example=50)
    lr = hyper.get("lr")
    if lr is not None and not isinstance(lr, jax.core.Tracer):
        lr_np = np.asarray(lr)
        if lr_np.ndim or not np.isfinite(lr_np) or lr_np <= 0:
            raise ValueError(
                f"{desc}: lr (Adam's learning rate) must be a positive number, got {lr!r}"
            )
    hyper = {k: jnp.asarray(v) for k, v in hyper.items()}
    adam_state = _init(p0)
    s = (adam_state, optax.EmptyState())  # optax.adam = chain(scale_by_adam, scale_by_lr)
    tracing = isinstance(p0, jax.core.Tracer)
    bar = None
    if progress and not tracing:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False)
    p, hist, t = p0, [], 0
    for n in _chunk_sizes(steps, chunk):
        p, s, h = _run(objective, model, p, s, data, hyper, jnp.asarray(t), n=n)
        hist.append(h)
        t += n
        if bar is not None:
            jax.block_until_ready(p)
            bar.update(n)
    if bar is not None:
        bar.close()
    history = jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *hist)
    return p, history
