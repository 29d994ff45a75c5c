"""DeepLIFT (rescale rule) and DeepLiftShap, through the evaluator's rectifier and max-pool hooks.

The input and its reference run through the model as one batch `[x; x_ref]`
(`jaxsal.forward.forward`), in which every ReLU / ReLU6 and every max
pooling is a `jax.custom_vjp` whose backward pass, for the input half,
returns DeepLIFT's multipliers instead of the derivative (Captum's rules):

- rectifiers (rescale rule): `g * (act(x) - act(x_ref)) / (x - x_ref)`, and
  the ordinary gradient where `|x - x_ref| < 1e-10`;
- max pooling: with `o`, `o_ref` the pooled input and reference and
  `m = max(o, o_ref)`, the window's difference `g * (o - o_ref)` is unpooled
  to the input's arg-max by `g * (m - o_ref)` and to the reference's by
  `g * (o - m)`, summed, and divided by `x - x_ref` (the ordinary gradient
  where `|x - x_ref| < 1e-10`). Captum weights the reference's share by the
  reference half's gradient `g_ref`; both halves carry the same multipliers,
  so `g_ref = g` except behind the 1e-10 fallback.

The reference half gets no gradient: only the input's class logit is
differentiated, and the rules read the reference's activations from the
forward pass. Linear layers (convolutions, dense layers, BatchNorm in
inference mode, average pooling, sums) keep their gradient, which is their
multiplier. The attribution is `(x - x_ref) * multiplier`, and it sums to
`f_c(x) - f_c(x_ref)` (summation-to-delta). Every backward pass is plain
`jnp`, so the maps can be differentiated again.

Captum 0.9 differs on torchvision's models in two ways (tests/test_deeplift.py):
where a max pooling reads a ReLU's output (VGG, ResNet), the ReLU's hook
records its output gradient before the pooling's hook rewrites it, so the
pooling's rule is lost (stock Captum's maps are the rescale rule with plain
max-pooling gradients); and where overlapping windows (ResNet's 3x3 / 2 stem
pooling) share an arg-max, its `max_unpool2d` keeps one of their values where
the rule adds them. Neither of its maps then sums to f(x) - f(x_ref); with
both fixed, Captum's maps equal jaxsal's to about 1e-13 (float64).

References:
  Shrikumar, Greenside and Kundaje. Learning important features through
  propagating activation differences. ICML 2017. https://arxiv.org/abs/1704.02685
  Lundberg and Lee. A unified approach to interpreting model predictions.
  NeurIPS 2017. https://arxiv.org/abs/1705.07874 (DeepLiftShap, there DeepSHAP)
  Ancona et al. Towards better understanding of gradient-based attribution
  methods for deep neural networks. ICLR 2018 (DeepLIFT as a modified gradient).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxsal.forward import forward, select_class
from jaxsal.interpreters.ablation import (
    baseline_distribution,
    check_chunk,
    map_chunks,
    reference_like,
)
from jaxsal.interpreters.base import interpreter

EPS = 1e-10  # Captum's: below this |x - x_ref| the ordinary gradient is kept


def _halves(v):
    n = v.shape[0] // 2
    return v[:n], v[n:]


def _multiplier(plain, num, delta):
    small = jnp.abs(delta) < EPS
    return jnp.where(small, plain, num / jnp.where(small, 1.0, delta))


def _paired_rule(backward):
    """`fn(v)` for the batch `v = [x; x_ref]`, differentiated by `backward(fn, v, g)`."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def rule(fn, v):
        return fn(v)

    rule.defvjp(lambda fn, v: (fn(v), v), backward)
    return rule


def _rescale_bwd(act, v, g):
    x, r = _halves(v)
    gx = _halves(g)[0]
    (plain,) = jax.vjp(act, x)[1](gx)
    m = _multiplier(plain, gx * (act(x) - act(r)), x - r)
    return (jnp.concatenate([m, jnp.zeros_like(r)]),)


# `act(v)` on [x; x_ref]; backward: the rescale rule's multipliers.
rescale = _paired_rule(_rescale_bwd)


def _max_pool_bwd(pool, v, g):
    x, r = _halves(v)
    gx = _halves(g)[0]
    o, unpool_x = jax.vjp(pool, x)
    o_ref, unpool_r = jax.vjp(pool, r)
    top = jnp.maximum(o, o_ref)
    (to_x,) = unpool_x(gx * (top - o_ref))
    (to_r,) = unpool_r(gx * (o - top))
    (plain,) = unpool_x(gx)
    m = _multiplier(plain, to_x + to_r, x - r)
    return (jnp.concatenate([m, jnp.zeros_like(r)]),)


# `pool(v)` on [x; x_ref]; backward: DeepLIFT's max-pooling multipliers.
max_pool_rule = _paired_rule(_max_pool_bwd)


def multipliers(params, x, ref, c):
    """DeepLIFT's multipliers of the class logit with respect to x, for the reference `ref`.

    Refuses models with an operation that has no DeepLIFT rule here (any
    nonlinearity other than ReLU, ReLU6 and max pooling): it would keep its
    gradient and the map would silently not be DeepLIFT's.
    """
    from jaxsal.graph import analyse, trace_graph, unsupported

    both = jnp.concatenate([x, ref])
    unsupported(analyse(trace_graph(params, both), params.spec.kind == "function"), "deeplift")
    n = x.shape[0]

    def objective(v):
        out, _ = forward(params, v, rectifier=rescale, max_pool=max_pool_rule)
        return select_class(out[:n], c).sum()

    return jax.grad(objective)(both)[:n]


@interpreter()
def deeplift(params, x, c, *, key=None, baseline=None):
    """DeepLIFT with the rescale rule: (x - baseline) times DeepLIFT's multipliers.

    Captum's `DeepLift` (`multiply_by_inputs=True`, eps 1e-10), with the
    max-pooling rule of its `maxpool` nonlinearity.

    Args:
      key: unused (the signature is shared by all interpreters).
      baseline: the reference input: scalar or array broadcastable to x
        (default zeros, Captum's default).

    Returns:
      Attributions of the shape of x; per image they sum to
      f_c(x) - f_c(baseline) (summation-to-delta).

    References:
      Shrikumar et al., Learning important features through propagating
      activation differences (2017).
    """
    del key
    ref = reference_like(baseline, x, "deeplift")
    return (x - ref) * multipliers(params, x, ref, c)


@interpreter(static=("chunk",))
def deeplift_shap(params, x, c, *, key=None, baselines=None, chunk=None):
    """DeepLiftShap: the mean of DeepLIFT's attributions over a distribution of baselines.

    Captum's `DeepLiftShap`: every image is explained against every baseline
    and the B attributions are averaged.

    Args:
      key: unused (every baseline is used; nothing is drawn).
      baselines: reference images (B, H, W, C) (required).
      chunk: baselines per pass (None: all at once).

    Returns:
      Attributions of the shape of x; per image they sum to
      f_c(x) - mean_b f_c(b).

    References:
      Lundberg and Lee, A unified approach to interpreting model predictions (2017).
    """
    del key
    check_chunk(chunk, "deeplift_shap", "baselines")
    b = baseline_distribution(baselines, x, "deeplift_shap")

    def attributions(refs):  # (k, H, W, C) -> (k, N, H, W, C)
        k, n = refs.shape[0], x.shape[0]
        xs = jnp.broadcast_to(x[None], (k,) + x.shape).reshape((k * n,) + x.shape[1:])
        rs = jnp.broadcast_to(refs[:, None], (k,) + x.shape).reshape(xs.shape)
        a = (xs - rs) * multipliers(params, xs, rs, jnp.tile(c, k))
        return a.reshape((k,) + x.shape)

    return map_chunks(attributions, b, chunk).mean(axis=0)
