"""Supervised pieces of training: cross-entropy, the classification loss, evaluation, metrics."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsal.params import ModelParams


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy per example of integer labels, shape (N,)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_loss(
    params: ModelParams, batch: Mapping[str, jax.Array], frozen=None, *, train: bool = False
):
    """Mean cross-entropy on `batch["image"]` / `batch["label"]` (the one loss signature).

    Args:
      params: the model.
      batch: {"image", "label"}.
      frozen: unused.
      train: BatchNorm in training mode (batch statistics); the updated running
        statistics come back as aux["state"], which the training step installs.

    Returns:
      (loss, {"accuracy"} and, with `train`, "state").
    """
    del frozen
    y = batch["label"]
    if train:
        logits, state = params.train_apply(batch["image"])
        aux = {"state": state}
    else:
        logits, aux = params.apply(batch["image"]), {}
    aux["accuracy"] = (logits.argmax(-1) == y).mean()
    return cross_entropy(logits, y).mean(), aux


@jax.jit
def _eval_batch(params: ModelParams, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    logits = params.apply(x)
    k = min(5, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return {
        "loss": cross_entropy(logits, y).sum(),
        "accuracy": (top[:, 0] == y).sum(),
        "top5": (top == y[:, None]).any(axis=1).sum(),
        "prediction": top[:, 0],
    }


def evaluate(
    params: ModelParams, data: Mapping[str, np.ndarray], *, batch_size: int = 250
) -> dict[str, float]:
    """Mean loss, top-1 accuracy and top-5 accuracy on a data set.

    Args:
      params: the model.
      data: a mapping (or `jaxsal.data.Scenes`) with "image" and integer "label" (N,).
      batch_size: images per forward pass.

    Returns:
      {"loss", "accuracy", "top5", "n"}.
    """
    from jaxsal.data import as_arrays

    arrays = as_arrays(data)
    images, labels = arrays["image"], np.asarray(arrays["label"])
    totals = {"loss": 0.0, "accuracy": 0.0, "top5": 0.0}
    for start in range(0, len(images), batch_size):
        x = jnp.asarray(images[start : start + batch_size])
        y = jnp.asarray(labels[start : start + batch_size])
        out = _eval_batch(params, x, y)
        for k in totals:
            totals[k] += float(out[k])
    n = len(images)
    return {**{k: v / max(n, 1) for k, v in totals.items()}, "n": n}


def predict(params: ModelParams, images: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
    """The predicted class of every image, (N,)."""
    fn = jax.jit(lambda p, x: p.apply(x).argmax(-1))
    out = [np.asarray(fn(params, jnp.asarray(images[i : i + batch_size])))
           for i in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def classification_metrics(labels, predictions, *, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-averaged precision and recall.

    A class never predicted has precision 0 (scikit-learn's `zero_division=0`);
    classes absent from both labels and predictions are left out of the means.

    Returns:
      {"accuracy", "precision", "recall", "n"}.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0), cm.sum(1)
    present = (predicted + actual) > 0
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)[present].mean()
    recall = np.where(actual > 0, tp / np.maximum(actual, 1), 0.0)[present].mean()
    return {
        "accuracy": float(tp.sum() / max(len(labels), 1)),
        "precision": float(precision),
        "recall": float(recall),
        "n": len(labels),
    }
