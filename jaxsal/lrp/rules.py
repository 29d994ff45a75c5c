"""LRP rules: how one layer passes relevance from its output to its inputs.

A rule is a small frozen dataclass (hashable, so it can be a static argument of
`jax.jit`) with a method `relevance(layer, R)` written in plain `jnp`. `attach`
wraps a layer's forward computation in a `jax.custom_vjp` whose backward pass
is that method: the ordinary backward pass of the model then carries relevance
instead of gradient (as in Zennit), and because the backward pass is plain
`jnp`, an LRP map can be differentiated again, e.g. with respect to the
parameters inside a training loss.

The formulas and constants follow Zennit 0.5.1 (`zennit/rules.py`), so that
maps agree with it to float64 rounding:

- stabiliser `stab(z) = z + eps * sign(z)` with sign(0) = +1;
- rules with parameters see a layer as `fn(x, w, b)`, affine in `x`; the
  modified forward passes below use `x+ = max(x, 0)`, `x- = min(x, 0)` and
  likewise `w+`, `w-`, `b+`, `b-`; `J_w` is the Jacobian of `fn(., w, .)`;
- rules without parameters (pooling, residual sums) see `fn(*xs)`, linear.

Half precision (float16, bfloat16): the forward pass runs in the model's
dtype, but each rule's backward pass runs in float32 (`jaxsal.lrp.attach` casts the
layer's inputs, parameters, output and the incoming relevance up, runs the
layer's `fn` with every operation in float32, and casts the relevance back,
saturating at the half type's largest finite value). In float16 the
stabilisers would otherwise underflow (1e-8 and 1e-12 are 0; `0 / 0` gives
NaN) and `R / stab(z)` overflow (`inf * 0` gives NaN). `stabilize` itself is
dtype-aware for direct use on half arrays: a positive eps is at least the
dtype's smallest normal number. float32 and float64 are untouched. Every
composite then gives finite maps close to float32's (tests/test_half_precision.py:
relative L2 error below 1% in float16; a few % in bfloat16, whose forward pass
keeps about 3 digits; Spearman correlation above 0.99).

References:
  Bach et al., On pixel-wise explanations for non-linear classifier decisions
  by layer-wise relevance propagation, PLoS ONE 2015 (epsilon, alpha-beta).
  Montavon et al., Explaining nonlinear classification decisions with deep
  Taylor decomposition, Pattern Recognition 2017 (z-plus, w-square, z-box).
  Montavon et al., Layer-wise relevance propagation: an overview, 2019 (gamma).
  Lapuschkin et al., Unmasking Clever Hans predictors, Nat. Commun. 2019 (flat).
  Anders et al., Software for dataset-wide XAI: from local explanations to
  global insights with Zennit, CoRelAy, and ViRelAy, 2021 (Zennit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxsal.models.layers import channels_last
from jaxsal.preprocess import IMAGENET_MEAN, IMAGENET_STD

# ImageNet pixel range [0, 1] after torchvision's normalisation, per RGB channel.
IMAGENET_LOW = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
IMAGENET_HIGH = tuple((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))


class Layer(NamedTuple):
    """What a rule sees of one layer call.

    Attributes:
      fn: `fn(x, w, b)` for layers with parameters, `fn(*xs)` otherwise.
      xs: the inputs.
      w: kernel, or None for layers without parameters.
      b: bias, or None.
      out: the layer's forward output.
      nonneg: the inputs are known to be non-negative (outputs of rectifiers),
        so terms in `x-` are exactly zero and are skipped.
    """

    fn: Callable
    xs: tuple
    w: jax.Array | None
    b: jax.Array | None
    out: jax.Array
    nonneg: bool


HALF = (jnp.float16, jnp.bfloat16)


def _eps(eps: float, dtype) -> float:
    """eps, raised to the dtype's smallest normal number in half precision (never underflows)."""
    if jnp.dtype(dtype) in HALF and eps > 0:
        return max(eps, float(jnp.finfo(dtype).smallest_normal))
    return eps


def stabilize(z: jax.Array, eps: float) -> jax.Array:
    """`z + eps * sign(z)` with sign(0) = +1 (Zennit's and the fooling paper's stabiliser).

    In float16 / bfloat16 a positive eps is at least the dtype's smallest
    normal number, so that `eps * sign(z)` never underflows to 0.
    """
    return z + _eps(eps, z.dtype) * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def pos(a):
    """max(a, 0) (None passes); derivative 0 at 0, like the rectifiers'."""
    return None if a is None else jax.nn.relu(a)


def neg(a):
    """min(a, 0) (None passes)."""
    return None if a is None else -jax.nn.relu(-a)


def _share(fn, terms, R, eps, mask=None):
    """Relevance shares `a_k * J_{w_k}^T (R / stab(z))` with `z = sum_k fn(a_k, w_k, b_k)`.

    Returns one share per term, in order (all with the shape of the inputs).
    """
    weights = [(w, b) for _, w, b in terms]

    def z_of(*inputs):
        return sum(fn(a, w, b) for a, (w, b) in zip(inputs, weights))

    inputs = [a for a, _, _ in terms]
    z, vjp = jax.vjp(z_of, *inputs)
    s = R / stabilize(z, eps)
    if mask is not None:
        s = jnp.where(mask, s, jnp.zeros_like(s))
    return [a * g for a, g in zip(inputs, vjp(s))]


def _split_terms(x, w_pos, w_neg, b, nonneg):
    """`[(x+, w_pos, b), (x-, w_neg, None)]`, the second dropped for non-negative inputs."""
    if nonneg:
        return [(x, w_pos, b)]
    return [(pos(x), w_pos, b), (neg(x), w_neg, None)]


def _needs_params(rule, layer: Layer):
    if layer.w is None:
        raise ValueError(
            f"{type(rule).__name__} needs a layer with weights (Conv, Linear, BatchNorm); "
            "map pooling and sums to Norm, NormPlus or Pass instead"
        )


def _bias_terms(b, mode: str):
    """Biases for the positive and negative shares: Zennit's split, the whole bias, or none."""
    if b is None or mode == "none":
        return None, None
    if mode == "split":
        return pos(b), neg(b)
    if mode == "whole":
        return b, b
    raise ValueError(f'unknown bias mode "{mode}"; use "split", "whole" or "none"')


class Rule:
    """Base class: `relevance(layer, R)` returns one relevance array per input."""

    def relevance(self, layer: Layer, R: jax.Array) -> tuple[jax.Array, ...]:
        raise NotImplementedError


@dataclass(frozen=True)
class Epsilon(Rule):
    """`R_in = x * J_w^T (R / stab(z))`, `z = fn(x, w, b)` the layer's output (bias included).

    `epsilon=0` gives LRP-0. `zero_bias=True` drops the bias from `z`.
    """

    epsilon: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, R):
        _needs_params(self, layer)
        x, w, b = layer.xs[0], layer.w, layer.b
        b = None if self.zero_bias else b
        z, vjp = jax.vjp(lambda a: layer.fn(a, w, b), x)
        if not self.zero_bias:
            z = layer.out
        return (x * vjp(R / stabilize(z, self.epsilon))[0],)


@dataclass(frozen=True)
class ZPlus(Rule):
    """z-plus (alpha1-beta0): `z = fn(x+, w+, b+) + fn(x-, w-)`, shares to `x+` and `x-`.

    Args:
      stabilizer: eps of `stab`.
      bias: "split" (Zennit: `b+` in z), "whole" (the raw bias, as the fooling
        paper's code), or "none".
    """

    stabilizer: float = 1e-6
    bias: str = "split"

    def relevance(self, layer, R):
        _needs_params(self, layer)
        b, _ = _bias_terms(layer.b, self.bias)
        terms = _split_terms(layer.xs[0], pos(layer.w), neg(layer.w), b, layer.nonneg)
        return (sum(_share(layer.fn, terms, R, self.stabilizer)),)


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """`alpha * R+ - beta * R-`, the positive and negative contributions normalised apart.

    Positive part as `ZPlus`; negative part `z = fn(x+, w-, b-) + fn(x-, w+)`.
    Any alpha, beta >= 0 (Zennit requires alpha - beta = 1; that is the
    conservative choice, not enforced here).
    """

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    bias: str = "split"

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or self.alpha + self.beta == 0:
            raise ValueError(
                f"alpha and beta must be >= 0 and not both 0, got {self.alpha}, {self.beta}"
            )

    def relevance(self, layer, R):
        _needs_params(self, layer)
        x, w, nonneg = layer.xs[0], layer.w, layer.nonneg
        b_pos, b_neg = _bias_terms(layer.b, self.bias)
        r = jnp.zeros_like(x)
        if self.alpha:
            terms = _split_terms(x, pos(w), neg(w), b_pos, nonneg)
            r = self.alpha * sum(_share(layer.fn, terms, R, self.stabilizer))
        if self.beta:
            terms = _split_terms(x, neg(w), pos(w), b_neg, nonneg)
            r = r - self.beta * sum(_share(layer.fn, terms, R, self.stabilizer))
        return (r,)


@dataclass(frozen=True)
class Gamma(Rule):
    """Generalised gamma rule (Zennit's): positive weights boosted by `gamma`.

    With `w_p = w + gamma w+`, `w_n = w + gamma w-` (biases likewise) and `z`
    the layer's output: where `z > 0`, share by `fn(x+, w_p, b_p) + fn(x-, w_n)`;
    where `z < 0`, by `fn(x+, w_n, b_n) + fn(x-, w_p)`.
    """

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def relevance(self, layer, R):
        _needs_params(self, layer)
        x, w, b, g = layer.xs[0], layer.w, layer.b, self.gamma
        w_p, w_n = w + g * pos(w), w + g * neg(w)
        b_p = None if b is None else b + g * pos(b)
        b_n = None if b is None else b + g * neg(b)
        z = layer.out
        up = _share(
            layer.fn, _split_terms(x, w_p, w_n, b_p, layer.nonneg), R, self.stabilizer, z > 0
        )
        dn = _share(
            layer.fn, _split_terms(x, w_n, w_p, b_n, layer.nonneg), R, self.stabilizer, z < 0
        )
        return (sum(up) + sum(dn),)


@dataclass(frozen=True)
class Flat(Rule):
    """Relevance spread uniformly over each output's receptive field: `J_1^T (R / stab(fn(1, 1)))`."""

    stabilizer: float = 1e-6

    def relevance(self, layer, R):
        _needs_params(self, layer)
        ones_w = jnp.ones_like(layer.w)
        z, vjp = jax.vjp(lambda a: layer.fn(a, ones_w, None), jnp.ones_like(layer.xs[0]))
        return (vjp(R / stabilize(z, self.stabilizer))[0],)


@dataclass(frozen=True)
class WSquare(Rule):
    """`J_{w^2}^T (R / stab(fn(1, w^2, b^2)))` (Zennit squares the bias too; `zero_bias` drops it)."""

    stabilizer: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, R):
        _needs_params(self, layer)
        w2 = layer.w**2
        b2 = None if (layer.b is None or self.zero_bias) else layer.b**2
        z, vjp = jax.vjp(lambda a: layer.fn(a, w2, b2), jnp.ones_like(layer.xs[0]))
        return (vjp(R / stabilize(z, self.stabilizer))[0],)


@dataclass(frozen=True)
class ZBox(Rule):
    """z-box for an input layer with bounded pixels `low <= x <= high`.

    `z = fn(x, w, b) - fn(low, w+, b+) - fn(high, w-, b-)`,
    `R_in = x * J_w^T s - low * J_{w+}^T s - high * J_{w-}^T s`, `s = R / stab(z)`.

    Args:
      low, high: a float or one float per channel (NHWC's last axis); None
        means the ImageNet pixel range [0, 1] after torchvision's normalisation.
    """

    low: float | tuple[float, ...] | None = None
    high: float | tuple[float, ...] | None = None
    stabilizer: float = 1e-6

    def bounds(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        low, high = self.low, self.high
        if low is None or high is None:
            if x.shape[-1] != 3:
                raise ValueError(
                    f"ZBox has no default bounds for {x.shape[-1]}-channel inputs; pass "
                    "low= and high= (the smallest and largest input values), e.g. "
                    "EpsilonGammaBox(low=-0.5, high=2.8)"
                )
            low = IMAGENET_LOW if low is None else low
            high = IMAGENET_HIGH if high is None else high

        def full(v):
            v = jnp.asarray(v, x.dtype)
            v = channels_last(v, x.ndim) if v.ndim == 1 else v
            return jnp.broadcast_to(v, x.shape)

        return full(low), full(high)

    def relevance(self, layer, R):
        _needs_params(self, layer)
        x, w, b, fn = layer.xs[0], layer.w, layer.b, layer.fn
        low, high = self.bounds(x)
        w_p, w_n, b_p, b_n = pos(w), neg(w), pos(b), neg(b)

        def z_of(a, lo, hi):
            return fn(a, w, b) - fn(lo, w_p, b_p) - fn(hi, w_n, b_n)

        z, vjp = jax.vjp(z_of, x, low, high)
        gx, glo, ghi = vjp(R / stabilize(z, self.stabilizer))
        # vjp already carries the minus signs of the low and high terms.
        return (x * gx + low * glo + high * ghi,)


@dataclass(frozen=True)
class Pass(Rule):
    """Pass-through: relevance leaves unchanged (rectifiers; BatchNorm in the fooling paper)."""

    def relevance(self, layer, R):
        x = layer.xs[0]
        if len(layer.xs) != 1 or x.shape != R.shape:
            raise ValueError(
                f"Pass needs a layer whose output has the shape of its one input, got inputs "
                f"{[a.shape for a in layer.xs]} and output {R.shape}"
            )
        return (R,)


@dataclass(frozen=True)
class Norm(Rule):
    """Layers without weights (pooling, sums): `R_i = x_i * J_i^T (R / stab(fn(xs)))` (Zennit's Norm)."""

    stabilizer: float = 1e-6

    def relevance(self, layer, R):
        _, vjp = jax.vjp(layer.fn, *layer.xs)
        grads = vjp(R / stabilize(layer.out, self.stabilizer))
        return tuple(a * g for a, g in zip(layer.xs, grads))


@dataclass(frozen=True)
class NormPlus(Rule):
    """Layers without weights, shares in proportion to the positive parts (the fooling paper).

    `R_i = x_i+ * J_i^T (R / (fn(xs+) + eps))`: average pooling splits by `x+`,
    a residual sum `a + b` gives `a+ / (a+ + b+ + eps)` of the relevance to `a`.
    """

    stabilizer: float = 1e-8

    def relevance(self, layer, R):
        xs = layer.xs if layer.nonneg else tuple(pos(a) for a in layer.xs)
        z, vjp = jax.vjp(layer.fn, *xs)
        grads = vjp(R / (z + _eps(self.stabilizer, z.dtype)))
        return tuple(a * g for a, g in zip(xs, grads))
