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

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsal.fooling.objective import Fooling, loss
from jaxsal.params import ModelParams
from jaxsal.train import cross_entropy


def _ce(params: ModelParams, x: jax.Array, y: jax.Array) -> jax.Array:
    return cross_entropy(params.apply(x), y).mean()


def free_adversarial_loss(trained, batch, frozen=None):
    """The loss of free adversarial training, with the training engine's signature.

    `trained` is `(params, delta)`: the cross-entropy at `x + delta`. One
    backward pass gives both gradients; the optimiser of `free_optimizer`
    descends on the parameters and ascends on `delta` by its sign.
    """
    del frozen
    params, delta = trained
    y = batch["label"]
    logits = params.apply(batch["image"] + delta)
    return cross_entropy(logits, y).mean(), {"accuracy": (logits.argmax(-1) == y).mean()}


def free_optimizer(tx: optax.GradientTransformation, *, eps: float):
    """`tx` on the parameters and `delta <- delta + eps * sign(grad)` on the perturbation."""
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    ascend = optax.stateless(lambda g, _: jax.tree.map(lambda a: eps * jnp.sign(a), g))

    def labels(tree):
        params, delta = tree
        return (jax.tree.map(lambda _: "params", params), jax.tree.map(lambda _: "delta", delta))

    return optax.multi_transform({"params": tx, "delta": ascend}, labels)


def free_adversarial_training(
    params: ModelParams,
    data: Mapping[str, np.ndarray],
    *,
    tx: optax.GradientTransformation,
    eps: float,
    batch_size: int,
    steps: int,
    replays: int = 4,
    seed: int = 0,
    workdir=None,
    mesh=None,
    progress: bool = True,
    desc: str = "free adversarial training",
) -> tuple[ModelParams, dict]:
    """Free adversarial training of `params`, each minibatch replayed `replays` times.

    Every replay does ONE backward pass that gives both the parameter gradient
    (for the update on the perturbed images) and the input gradient, by whose
    sign the perturbation `delta` moves by `eps`, clipped back to the L-inf
    ball of radius `eps`; `delta` is carried over to the next minibatch. Runs
    on the training engine (`jaxsal.train.fit`): resumable, data-parallel.

    Args:
      params: the starting model.
      data: {"image", "label"} arrays; minibatches are drawn without replacement
        in a random order per pass (seed `seed`).
      tx: the optimiser of the parameters.
      eps: L-inf radius of the perturbation (in the model's input units), also its step.
      batch_size: images per minibatch (one fixed shape: `delta` is carried).
      steps: minibatches used (each replayed `replays` times).
      replays: m, the replays of each minibatch.
      seed: seed of the minibatch order.
      workdir: optional directory of resumable checkpoints.
      mesh: data-parallel mesh (default: every device if `batch_size` splits over them).
      progress: show a progress bar.
      desc: the bar's label.

    Returns:
      (params, {"loss": loss of every replay, "max_abs_delta": the largest |delta|}).

    References:
      Shafahi et al. 2019, algorithm 1 (epochs divided by m for the same cost).
    """
    from jaxsal.data.tfds_images import batch_indices
    from jaxsal.train import fit, mesh_for

    if replays < 1:
        raise ValueError(f"replays must be at least 1, got {replays}")
    images, labels = np.asarray(data["image"]), np.asarray(data["label"])
    if len(images) < batch_size:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(images)} images given")

    def batch_fn(step):
        idx = batch_indices(len(images), step // replays, batch_size=batch_size, seed=seed)
        return {"image": images[idx], "label": labels[idx]}

    mesh = mesh_for([batch_size]) if mesh is None else mesh
    delta = jnp.zeros((batch_size,) + images.shape[1:], images.dtype)
    project = lambda t: (t[0], jnp.clip(t[1], -eps, eps))  # noqa: E731
    (params, delta), history = fit(
        free_adversarial_loss, (params, delta), batch_fn, tx=free_optimizer(tx, eps=eps),
        steps=steps * replays, project=project, workdir=workdir, mesh=mesh,
        config={"eps": eps, "replays": replays, "batch_size": batch_size, "seed": seed},
        progress=progress, desc=desc,
    )  # fmt: skip
    return params, {
        "loss": [h["loss"] for h in history],
        "max_abs_delta": float(jnp.abs(delta).max()),
    }


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
    batch: Mapping[str, jax.Array],
    params0: ModelParams,
    *,
    fooling: Fooling,
    eps: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`CE(FGSM examples) + lam * L_F(clean)`: fooling that keeps adversarial robustness.

    Same signature and aux as `jaxsal.fooling.objective.loss` once `fooling` and
    `eps` are bound (e.g. with `functools.partial`).
    """
    xa = fgsm(params, batch["image"], jnp.asarray(batch["label"]), eps=eps)
    total, aux = loss(params, batch, params0, fooling=fooling, inputs=xa)
    aux["adv_accuracy"] = aux.pop("accuracy")
    return total, aux
