"""Free adversarial training (Shafahi et al. 2019), attacks, and fooling that keeps robustness.

Free adversarial training replays each minibatch `replays` times; every replay
does ONE backward pass that gives both the parameter gradient (for the
optimiser update on the perturbed images) and the input gradient, by whose sign
the perturbation `delta` moves by `eps` and is clipped back to the L-inf ball
of radius `eps`. `delta` is carried over from one minibatch to the next.

Heo et al. show that a model trained this way can be fooled too; to keep its
robustness while fooling, `robust_fooling_loss` computes the cross-entropy
term on FGSM examples (one signed-gradient step of size `eps` from the clean
image) instead of the clean ones, and the penalty on the clean images.

References:
  Shafahi et al., Adversarial training for free!, NeurIPS 2019, algorithm 1.
  Goodfellow et al., Explaining and harnessing adversarial examples, ICLR 2015 (FGSM).
  Madry et al., Towards deep learning models resistant to adversarial attacks, ICLR 2018 (PGD).
  Heo et al., Fooling neural network interpretations via adversarial model
  manipulation, NeurIPS 2019, section 5.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsal.fooling.objective import Fooling, loss
from jaxsal.params import ModelParams


def _ce(params: ModelParams, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = params.apply(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_free_step(tx: optax.GradientTransformation, *, eps: float) -> Callable:
    """One replay of free adversarial training, jitted.

    Args:
      tx: the optimiser of `params.params`.
      eps: L-inf radius of the perturbation (in the model's input units), also its step.

    Returns:
      `step(params, opt_state, delta, x, y) -> (params, opt_state, delta, loss)`: the
      loss and both gradients at `x + delta` from one backward pass; params get the
      optimiser update, `delta <- clip(delta + eps * sign(grad_x), -eps, eps)`.

    References:
      Shafahi et al. 2019, algorithm 1.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")

    def step(params, opt_state, delta, x, y):
        def loss(p, d):
            return _ce(params.replace(params=p), x + d, y)

        value, (g_params, g_delta) = jax.value_and_grad(loss, argnums=(0, 1))(params.params, delta)
        updates, opt_state = tx.update(g_params, opt_state, params.params)
        params = params.replace(params=optax.apply_updates(params.params, updates))
        delta = jnp.clip(delta + eps * jnp.sign(g_delta), -eps, eps)
        return params, opt_state, delta, value

    return jax.jit(step)


def free_adversarial_training(
    params: ModelParams,
    data: Iterable[Mapping[str, np.ndarray]],
    *,
    tx: optax.GradientTransformation,
    eps: float,
    replays: int = 4,
    steps: int | None = None,
    progress: bool = True,
    desc: str = "free adversarial training",
) -> tuple[ModelParams, dict]:
    """Free adversarial training of `params` on minibatches from `data`.

    Args:
      params: the starting model.
      data: minibatches {"image", "label"} of one fixed shape (e.g. `jaxsal.data.batches`);
        each is replayed `replays` times.
      tx: the optimiser.
      eps: L-inf radius of the perturbation.
      replays: m, the replays of each minibatch.
      steps: minibatches used (all of `data` when None).
      progress: show a tqdm bar.
      desc: the bar's label.

    Returns:
      (params, {"loss": loss of every replay, "max_abs_delta": the largest |delta| seen}).

    References:
      Shafahi et al. 2019, algorithm 1 (epochs divided by m for the same cost).
    """
    from tqdm.auto import tqdm

    if replays < 1:
        raise ValueError(f"replays must be at least 1, got {replays}")
    step = make_free_step(tx, eps=eps)
    opt_state = tx.init(params.params)
    delta = None
    losses, max_delta = [], 0.0
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for i, batch in enumerate(data):
        if steps is not None and i >= steps:
            break
        x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
        if delta is None:
            delta = jnp.zeros_like(x)
        if delta.shape != x.shape:
            raise ValueError(
                f"free adversarial training needs batches of one shape; got {x.shape} after "
                f"{delta.shape} (drop the last, smaller batch)"
            )
        for _ in range(replays):
            params, opt_state, delta, loss = step(params, opt_state, delta, x, y)
            losses.append(float(loss))
        max_delta = max(max_delta, float(jnp.abs(delta).max()))
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    return params, {"loss": losses, "max_abs_delta": max_delta}


def fgsm(params: ModelParams, x: jax.Array, y: jax.Array, *, eps: float) -> jax.Array:
    """FGSM examples `x + eps * sign(grad_x CE)` (no gradient flows through them)."""
    g = jax.grad(lambda xx: _ce(params, xx, y))(x)
    return jax.lax.stop_gradient(x + eps * jnp.sign(g))


@partial(jax.jit, static_argnames=("steps",))
def pgd(
    params: ModelParams,
    x: jax.Array,
    y: jax.Array,
    *,
    eps: float,
    steps: int = 5,
    step_size: float | None = None,
) -> jax.Array:
    """L-inf PGD examples from the clean image (no random start): `steps` signed steps, clipped.

    Args:
      params: the model attacked.
      x: clean images.
      y: labels.
      eps: L-inf radius.
      steps: attack iterations.
      step_size: step of each iteration (default `2.5 * eps / steps`, Madry et al.).

    Returns:
      Adversarial images within `eps` of `x`.
    """
    alpha = 2.5 * eps / steps if step_size is None else step_size

    def body(_, xa):
        g = jax.grad(lambda xx: _ce(params, xx, y))(xa)
        return x + jnp.clip(xa + alpha * jnp.sign(g) - x, -eps, eps)

    return jax.lax.fori_loop(0, steps, body, x)


def adversarial_accuracy(
    params: ModelParams,
    data: Mapping[str, np.ndarray],
    *,
    eps: float,
    steps: int = 5,
    batch_size: int = 100,
) -> float:
    """Top-1 accuracy on PGD examples of `data` ({"image", "label"})."""
    hits, n = 0, 0
    images, labels = np.asarray(data["image"]), np.asarray(data["label"])
    for i in range(0, len(images), batch_size):
        x, y = jnp.asarray(images[i : i + batch_size]), jnp.asarray(labels[i : i + batch_size])
        xa = pgd(params, x, y, eps=eps, steps=steps)
        hits += int((params.apply(xa).argmax(-1) == y).sum())
        n += len(y)
    return hits / max(n, 1)


def robust_fooling_loss(
    params: ModelParams,
    params0: ModelParams,
    batch: Mapping[str, jax.Array],
    fooling: Fooling,
    *,
    eps: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`CE(FGSM examples) + lam * L_F(clean)`: fooling that keeps adversarial robustness.

    Same signature and aux as `jaxsal.fooling.objective.loss` once `fooling` and
    `eps` are bound (e.g. with `functools.partial`).
    """
    xa = fgsm(params, batch["image"], jnp.asarray(batch["label"]), eps=eps)
    total, aux = loss(params, params0, batch, fooling, inputs=xa)
    aux["adv_accuracy"] = aux.pop("accuracy")
    return total, aux
