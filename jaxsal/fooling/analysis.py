"""Analyses of a fooled model: transfer of the fooling, AOPC curves, robustness to weight noise.

- `test_losses_by_method` / `fsr_by_method`: the per-image test losses and the
  Fooling Success Rate of one fooling measured with several interpreters; one
  row of the transfer matrix (fool with one interpreter, measure with all).
- `transfer_matrix`: those rows for several fooled models.
- `aopc_curves`: the region-perturbation curves of Heo et al.'s figure 4a: the
  original and the fooled model, each perturbed most-relevant-first by the
  original map, by the fooled map, and in random order.
- `perturb_params` / `noise_robustness`: Gaussian noise on the fooled weights
  (figure 4b): accuracy and FSR against the noise level.

Everything works in chunks of `batch_size` images so that whole validation
sets fit in memory; the heavy lifting is `jaxsal.fooling.objective`.

References:
  Heo et al., Fooling neural network interpretations via adversarial model
  manipulation, NeurIPS 2019, sections 4.3 (transfer) and 5 (AOPC, noise).
  Samek et al., Evaluating the visualization of what a deep neural network has
  learned, IEEE TNNLS 2017 (AOPC).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.fooling.objective import Fooling, heatmap_of, test_losses
from jaxsal.fooling.perturbation import aopc, perturbation_curve
from jaxsal.params import ModelParams

AOPC_ORDERS = ("original_map", "fooled_map", "random")


def _chunks(data: Mapping[str, np.ndarray], batch_size: int):
    n = len(next(iter(data.values())))
    for start in range(0, n, batch_size):
        yield {k: np.asarray(v[start : start + batch_size]) for k, v in data.items()}


@partial(jax.jit, static_argnames=("fooling", "method"))
def _test_losses(params, params0, batch, fooling, method):
    return test_losses(params, batch, params0, fooling, method=method)


def test_losses_by_method(
    params: ModelParams,
    params0: ModelParams,
    data: Mapping[str, np.ndarray],
    fooling: Fooling,
    *,
    methods: Sequence[str],
    batch_size: int = 50,
) -> dict[str, np.ndarray]:
    """Per-image test losses of `fooling` measured with each interpreter of `methods`.

    Args:
      params: the fooled model (or the original, for the baseline FSR).
      params0: the original model (the reference of Top-k, Center-mass and Active).
      data: {"image", "label"} (and "fool_image" for active fooling), NumPy arrays
        with the images on the leading axis.
      fooling: the fooling whose test loss is measured.
      methods: interpreters (`objective.METHODS`); "smoothgrad" uses `fooling.seed`.
      batch_size: images per jitted call.

    Returns:
      {method: (N,) float64 test losses} (N the number of "fool_image"s for active
      fooling, of "image"s otherwise).
    """
    key = "fool_image" if fooling.kind == "active" else "image"
    if key not in data:
        raise ValueError(f'{fooling.name} needs data["{key}"]')
    keys = ("fool_image",) if fooling.kind == "active" else ("image", "label")
    subset = {k: data[k] for k in keys}
    out = {}
    for method in methods:
        parts = [
            np.asarray(_test_losses(params, params0, b, fooling, method), np.float64)
            for b in _chunks(subset, batch_size)
        ]
        out[method] = np.concatenate(parts)
    return out


def fsr_by_method(
    losses: Mapping[str, np.ndarray], fooling: Fooling, *, interval: tuple | None = None
) -> dict[str, float]:
    """The FSR of each method's test losses, with the interval of `fooling`'s kind (or `interval`).

    NaN losses (e.g. the Spearman correlation of a constant map) count as failures.
    """
    lo, hi = interval or fooling.interval
    return {m: float(np.mean((t >= lo) & (t <= hi))) for m, t in losses.items()}


def transfer_matrix(
    fooled: Mapping[str, tuple[ModelParams, Fooling]],
    params0: ModelParams,
    data: Mapping[str, np.ndarray],
    *,
    methods: Sequence[str],
    batch_size: int = 50,
) -> dict[str, dict[str, float]]:
    """FSR of every fooled model measured with every interpreter.

    Args:
      fooled: {run name: (fooled params, its Fooling)}.
      params0: the original model.
      data: test data (see `test_losses_by_method`).
      methods: the interpreters of the columns.
      batch_size: images per jitted call.

    Returns:
      {run name: {method: FSR}}; the diagonal (method == fooling.method) is the
      matched case, the rest measures transfer.

    References:
      Heo et al. 2019, section 4.3 (table 2).
    """
    rows = {}
    for name, (params, fooling) in fooled.items():
        losses = test_losses_by_method(
            params, params0, data, fooling, methods=methods, batch_size=batch_size
        )
        rows[name] = fsr_by_method(losses, fooling)
    return rows


def _heatmaps(params, x, c, fooling, batch_size):
    fn = jax.jit(lambda p, xb, cb: heatmap_of(p, xb, cb, fooling))
    return jnp.concatenate(
        [
            fn(params, x[i : i + batch_size], c[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        ]
    )


def aopc_curves(
    params0: ModelParams,
    params: ModelParams,
    x: np.ndarray,
    c: np.ndarray,
    fooling: Fooling,
    *,
    key: jax.Array,
    steps: int | None = None,
    reference: float | str = "normal",
    probabilities: bool = True,
    batch_size: int = 50,
) -> dict[str, dict[str, np.ndarray]]:
    """Mean cumulative AOPC curves of the original and the fooled model, three orders each.

    Patches (one per heatmap cell of `fooling.method`'s map) are replaced most
    relevant first by the original model's map, by the fooled model's map, or
    in random order, and each model's class score is recorded.

    Args:
      params0: the original model.
      params: the fooled model.
      x: images (N, H, W, C); H and W multiples of the heatmap's size.
      c: class per image, shape (N,).
      fooling: its `method` (and layer) give the maps that order the patches.
      key: PRNG key of the random order and the noise reference.
      steps: patches removed (all when None).
      reference: what a removed patch becomes (see `perturbation_curve`).
      probabilities: track the softmax probability (else the logit).
      batch_size: images per call.

    Returns:
      {"original": {order: (K + 1,)}, "fooled": {...}} with orders
      `AOPC_ORDERS`: the AOPC_k averaged over images (`aopc(..., cumulative=True)`).

    References:
      Heo et al. 2019, figure 4a; Samek et al. 2017.
    """
    x, c = jnp.asarray(x), jnp.asarray(c)
    maps = {
        "original_map": _heatmaps(params0, x, c, fooling, batch_size),
        "fooled_map": _heatmaps(params, x, c, fooling, batch_size),
    }
    out: dict[str, dict[str, np.ndarray]] = {}
    for model_name, p in (("original", params0), ("fooled", params)):

        def model_fn(xb, p=p):
            logits = p.apply(xb)
            return jax.nn.softmax(logits) if probabilities else logits

        out[model_name] = {}
        for order in AOPC_ORDERS:
            curves = []
            for i in range(0, len(x), batch_size):
                sl = slice(i, i + batch_size)
                h = maps["original_map" if order == "random" else order][sl]
                curve = perturbation_curve(
                    model_fn, x[sl], c[sl], h, steps=steps,
                    order="random" if order == "random" else "morf",
                    reference=reference, key=jax.random.fold_in(key, i),
                )  # fmt: skip
                curves.append(np.asarray(aopc(curve, cumulative=True)))
            out[model_name][order] = np.concatenate(curves).mean(axis=0)
    return out


def perturb_params(params: ModelParams, level: float, *, key: jax.Array) -> ModelParams:
    """The model with Gaussian noise on every trained array, relative to the array's spread.

    `w + level * std(w) * N(0, 1)` per array of `params.params` (BatchNorm
    statistics untouched); scalar or constant arrays get `level * |w|`-scaled
    noise (`std` falls back to the mean absolute value).

    Args:
      params: the model.
      level: noise level (0 returns the model unchanged).
      key: PRNG key.

    Returns:
      The perturbed model.
    """
    if level < 0:
        raise ValueError(f"noise level must be >= 0, got {level}")
    leaves, treedef = jax.tree.flatten(params.params)
    keys = jax.random.split(key, len(leaves))
    noisy = []
    for k, w in zip(keys, leaves, strict=True):
        w = jnp.asarray(w)
        scale = jnp.std(w)
        scale = jnp.where(scale > 0, scale, jnp.abs(w).mean())
        noisy.append(w + level * scale * jax.random.normal(k, w.shape, w.dtype))
    return params.replace(params=jax.tree.unflatten(treedef, noisy))


def noise_robustness(
    params: ModelParams,
    params0: ModelParams,
    data: Mapping[str, np.ndarray],
    fooling: Fooling,
    *,
    levels: Sequence[float],
    key: jax.Array,
    evaluate: Callable[[ModelParams], Mapping[str, float]],
    methods: Sequence[str] | None = None,
    batch_size: int = 50,
) -> list[dict]:
    """Accuracy and FSR of the model with Gaussian weight noise of increasing level.

    Args:
      params: the model perturbed (the fooled one, or the original as a control).
      params0: the original model (reference of the test losses; not perturbed).
      data: FSR test data (see `test_losses_by_method`).
      fooling: the fooling measured.
      levels: noise levels of `perturb_params`.
      key: PRNG key (the same noise draw for every level, scaled).
      evaluate: `evaluate(params) -> {"accuracy", "top5", ...}`.
      methods: interpreters whose FSR is measured (default: `fooling.method`).
      batch_size: images per call.

    Returns:
      One dict per level: {"level", **evaluate(noisy), "fsr": {method: FSR}}.

    References:
      Heo et al. 2019, figure 4b.
    """
    methods = tuple(methods or (fooling.method,))
    rows = []
    for level in levels:
        noisy = perturb_params(params, float(level), key=key)
        losses = test_losses_by_method(
            noisy, params0, data, fooling, methods=methods, batch_size=batch_size
        )
        rows.append(
            {
                "level": float(level),
                **{k: float(v) for k, v in evaluate(noisy).items()},
                "fsr": fsr_by_method(losses, fooling),
            }
        )
    return rows
