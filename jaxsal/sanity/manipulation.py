"""Input manipulation of explanations (Dombrowski et al.) and the beta-smoothing defence.

The attack perturbs the input x so that its explanation matches a target map
(another image's explanation) while the output stays put:

    loss(x') = expl_weight * MSE(h(x'), h_target) + output_weight * MSE(softmax(x'), softmax(x))

with `h = sum_c |attribution|` normalised to sum 1 per image, Adam (lr 2e-4,
1,500 steps) and x' clipped to the valid input range after every step. Adam
runs on the pixel values `u = (x - low) / (high - low)` in [0, 1] (`bounds` =
(low, high), the normalised black and white pixel): the paper's learning rate is
for inputs of range of order 1, and Adam's step is about `lr` per coordinate
whatever the gradient's scale, so optimising a normalised input of range 10
(the digit scenes, STD 0.0972) would move the pixels ten times slower. For
ReLU networks the explanation's gradient with respect to x is zero almost
everywhere, so the attack differentiates a beta-smoothed surrogate (ReLU
replaced by softplus(beta x) / beta) with beta grown geometrically from 10 to
100 over the steps; the manipulated input is then judged with the model as it
is. The defence explains with the beta-smoothed network at a small beta (the
paper shows beta 10, 3, 1), whose explanations move less under the same
input change.

The steps run inside `jax.lax.scan`, `chunk` steps per compiled call, with a
progress bar between chunks.

References:
  Dombrowski, Alber, Anders, Ackermann, Mueller and Kessel. Explanations can be
  manipulated and geometry is to blame. NeurIPS 2019, sections 3 (attack) and
  5 (beta-smoothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxsal.metrics import spearman
from jaxsal.params import ModelParams


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """The attack's constants (defaults: the paper's).

    Attributes:
      steps: Adam steps (1,500).
      learning_rate: Adam's learning rate (2e-4), on pixel values in [0, 1] when
        `pixel_space`, else on the model's input x.
      expl_weight: weight of the explanation MSE (1e11).
      output_weight: weight of the softmax MSE (1e6).
      beta_start: surrogate beta at the first step (10); None attacks the
        model as given (e.g. an explanation already beta-smoothed).
      beta_end: surrogate beta at the last step (100), geometric in between.
      chunk: steps per compiled `lax.scan` call (the progress bar's unit).
      traced_beta: beta is a traced value inside the scan (one compilation);
        False holds it constant per chunk, for interpreters that hash the
        module (LRP), at one compilation per chunk.
      pixel_space: Adam on `u = (x - low) / (high - low)` in [0, 1] (True), or
        on x itself in its own units (False).
    """

    steps: int = 1500
    learning_rate: float = 2e-4
    expl_weight: float = 1e11
    output_weight: float = 1e6
    beta_start: float | None = 10.0
    beta_end: float | None = 100.0
    chunk: int = 100
    traced_beta: bool = True
    pixel_space: bool = True

    def betas(self) -> np.ndarray | None:
        """The surrogate's beta at every step, or None without a surrogate."""
        if self.beta_start is None:
            return None
        end = self.beta_start if self.beta_end is None else self.beta_end
        t = np.arange(self.steps) / max(self.steps - 1, 1)
        return self.beta_start * (end / self.beta_start) ** t


def explanation_map(h: jax.Array) -> jax.Array:
    """The attack's explanation: `sum_c |h|` normalised to sum 1 per image, (N, H, W, 1)."""
    a = jnp.abs(h).sum(-1, keepdims=True)
    return a / (a.sum(axis=(1, 2, 3), keepdims=True) + 1e-12)


def _objective(params, x, target_map, probs, c, key, explain, config):
    h = explanation_map(explain(params, x, c, key))
    p = jax.nn.softmax(params.apply(x), axis=-1)
    expl = jnp.mean((h - target_map) ** 2)
    out = jnp.mean((p - probs) ** 2)
    return config.expl_weight * expl + config.output_weight * out, (expl, out)


@partial(jax.jit, static_argnames=("explain", "config", "static_beta"))
def _run_chunk(params, u, opt_state, betas, target_map, probs, c, key, affine, u_bounds, *,
               explain, config, static_beta):  # fmt: skip
    # u: the optimised variable, x = low + span * u, u clipped to u_bounds
    tx = optax.adam(config.learning_rate)
    (low, span), (u_lo, u_hi) = affine, u_bounds

    def objective(model, u):
        return _objective(model, low + span * u, target_map, probs, c, key, explain, config)

    def step(carry, beta):
        u, opt_state = carry
        model = params
        if static_beta is not None:
            model = params.with_beta(static_beta)
        elif config.beta_start is not None:
            model = params.with_beta(beta)
        (_, terms), g = jax.value_and_grad(objective, argnums=1, has_aux=True)(model, u)
        updates, opt_state = tx.update(g, opt_state, u)
        u = jnp.clip(optax.apply_updates(u, updates), u_lo, u_hi)
        return (u, opt_state), jnp.stack(terms)

    (u, opt_state), terms = jax.lax.scan(step, (u, opt_state), betas)
    return u, opt_state, terms


def manipulate(
    params: ModelParams,
    x: jax.Array,
    target_map: jax.Array,
    explain: Callable,
    *,
    bounds: tuple[float, float],
    config: AttackConfig = AttackConfig(),
    key: jax.Array,
    c: jax.Array | None = None,
    progress: bool = True,
    desc: str = "attack",
) -> tuple[jax.Array, dict[str, np.ndarray]]:
    """Optimises the input so that its explanation matches `target_map`, the output unchanged.

    Args:
      params: the model whose explanation is attacked (a surrogate with
        `config.beta_*` differentiates `params.with_beta(beta)`).
      x: the original NHWC batch.
      target_map: the target explanations, (N, H, W, 1), each summing to 1
        (`explanation_map` of another image's attribution).
      explain: `explain(params, x, c, key) -> attribution`, traceable and twice
        differentiable (e.g. `lambda p, x, c, k: jaxsal.simple_grad(p, x, c)`);
        hashable (a static argument of the jit: define it once).
      bounds: (low, high) of the valid input (the normalised values of black
        and white pixels; arrays broadcasting against x for per-channel
        normalisation). With `config.pixel_space` they also define the pixel
        values `u = (x - low) / (high - low)` that Adam optimises.
      config: the attack's constants.
      key: PRNG key passed to `explain` (stochastic interpreters draw from it).
      c: the explained classes (default: the model's prediction on x).
      progress: show a progress bar over the steps.
      desc: the bar's label.

    Returns:
      The manipulated batch and a log: "expl_mse" and "output_mse" (unweighted
      loss terms at every step, before its update, (steps, ) each averaged over
      the batch) and "beta" (the surrogate's beta per step, or None).
    """
    x = jnp.asarray(x)
    if target_map.shape != x.shape[:3] + (1,):
        raise ValueError(
            f"target_map must have shape {x.shape[:3] + (1,)} (one map per image), "
            f"got {target_map.shape}; build it with explanation_map"
        )
    logits = params.apply(x)
    probs = jax.nn.softmax(logits, axis=-1)
    c = jnp.argmax(logits, -1) if c is None else jnp.broadcast_to(jnp.asarray(c), x.shape[:1])
    betas = config.betas()
    schedule = np.zeros(config.steps) if betas is None else betas
    low, high = (jnp.broadcast_to(jnp.asarray(b, x.dtype), x.shape) for b in bounds)
    if config.pixel_space:  # x = low + span * u, u in [0, 1]
        affine, u_bounds = (low, high - low), (jnp.zeros_like(x), jnp.ones_like(x))
    else:  # u = x
        affine, u_bounds = (jnp.zeros_like(x), jnp.ones_like(x)), (low, high)
    u = (x - affine[0]) / affine[1]
    opt_state = optax.adam(config.learning_rate).init(u)
    terms = []
    bar = tqdm(total=config.steps, desc=desc, disable=not progress, leave=False)
    for start in range(0, config.steps, config.chunk):
        chunk = jnp.asarray(schedule[start : start + config.chunk], x.dtype)
        static_beta = None
        if betas is not None and not config.traced_beta:
            static_beta = float(schedule[start])
        u, opt_state, t = _run_chunk(params, u, opt_state, chunk, target_map, probs, c, key,
                                     affine, u_bounds, explain=explain, config=config,
                                     static_beta=static_beta)  # fmt: skip
        terms.append(np.asarray(t))
        bar.update(len(chunk))
        bar.set_postfix(expl=f"{float(t[-1, 0]):.2e}", out=f"{float(t[-1, 1]):.2e}")
    bar.close()
    terms = np.concatenate(terms)
    x = jnp.clip(affine[0] + affine[1] * u, low, high)
    return x, {"expl_mse": terms[:, 0], "output_mse": terms[:, 1], "beta": betas}


def _ssim_max(a, b):
    from jaxsal.metrics import ssim  # written beside this package; imported on use

    scale = lambda m: m / (m.max(axis=(1, 2, 3), keepdims=True) + 1e-12)  # noqa: E731
    return ssim(scale(a), scale(b), data_range=1.0)


def manipulation_scores(
    params: ModelParams,
    x: jax.Array,
    x_adv: jax.Array,
    target_map: jax.Array,
    explain: Callable,
    *,
    c: jax.Array,
    key: jax.Array,
    bounds: tuple | None = None,
) -> dict[str, np.ndarray]:
    """How well a manipulation worked, per image, judged with `params` as given.

    Args:
      params: the model that explains (e.g. the ReLU model, or `with_beta(3.0)`).
      x: original batch; `x_adv` the manipulated batch.
      target_map: target explanations of the same model, (N, H, W, 1).
      explain: as for `manipulate`.
      c: the explained classes.
      key: PRNG key for stochastic interpreters.
      bounds: (low, high) of the valid input as for `manipulate`; adds
        "pixel_mse", the MSE of the change in pixel values in [0, 1].

    Returns:
      Per image: "mse_target" / "mse_original" (explanation MSE to the target and
      to the original explanation), "spearman_target" / "spearman_original",
      "ssim_target" / "ssim_original" (SSIM of the maps scaled to max 1),
      "output_mse" (softmax MSE), "max_prob_change", "same_class" (argmax kept)
      and "input_mse" (MSE of x_adv - x in the model's input units).
    """
    h0 = explanation_map(explain(params, x, c, key))
    h1 = explanation_map(explain(params, x_adv, c, key))
    p0 = jax.nn.softmax(params.apply(x), -1)
    p1 = jax.nn.softmax(params.apply(x_adv), -1)
    mse = lambda a, b: jnp.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))  # noqa: E731
    out = {
        "mse_target": mse(h1, target_map),
        "mse_original": mse(h1, h0),
        "spearman_target": spearman(h1, target_map),
        "spearman_original": spearman(h1, h0),
        "ssim_target": _ssim_max(h1, target_map),
        "ssim_original": _ssim_max(h1, h0),
        "output_mse": mse(p1, p0),
        "max_prob_change": jnp.abs(p1 - p0).max(-1),
        "same_class": (p1.argmax(-1) == p0.argmax(-1)).astype(jnp.float32),
        "input_mse": mse(x_adv, x),
    }
    if bounds is not None:
        low, high = (jnp.asarray(b, x.dtype) for b in bounds)
        out["pixel_mse"] = mse(x_adv / (high - low), x / (high - low))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}
