"""Shapley-value estimators and LIME: GradientShap, KernelSHAP, LIME, Shapley Value Sampling.

Captum 0.9's methods with the interpreter signature. Each draws its random
samples from `key` alone, with a public function that returns exactly the
draws it uses (`gradient_shap_draws`, `kernel_shap_samples`, `lime_samples`,
`shapley_permutations`, in `jaxsal.interpreters.shap_sampling` and importable
from here), so that another library can be fed the same ones.

KernelSHAP, LIME and Shapley Value Sampling perturb *features*: groups of
pixels given by an integer `feature_mask` (superpixels); a feature switched
off takes the baseline's values. They call the model only through
`params.apply`, `chunk` perturbations (each a copy of the batch) per forward
pass. KernelSHAP and LIME fit their weighted linear surrogate in JAX, per
image, by an SVD of the weighted, centred design (least squares: the
minimum-norm solution, as `sklearn.linear_model.LinearRegression`; ridge
with `alpha > 0`, as `sklearn.linear_model.Ridge`); the intercept is fitted
and not returned.

References:
  Lundberg and Lee. A unified approach to interpreting model predictions.
  NeurIPS 2017. https://arxiv.org/abs/1705.07874 (KernelSHAP, GradientShap's expectation)
  Ribeiro, Singh and Guestrin. "Why should I trust you?" Explaining the
  predictions of any classifier. KDD 2016. https://arxiv.org/abs/1602.04938 (LIME)
  Castro, Gomez and Tejada. Polynomial calculation of the Shapley value based
  on sampling. Computers & Operations Research 2009 (Shapley Value Sampling).
  Erion et al. Improving performance of deep learning models with axiomatic
  attribution priors and expected gradients. 2019. https://arxiv.org/abs/1906.10670
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.forward import select_class
from jaxsal.interpreters.ablation import (
    baseline_distribution,
    check_chunk,
    check_count,
    class_scores,
    concrete,
    feature_mask_4d,
    features_on,
    map_chunks,
    per_feature,
    prepared,
    reference_like,
    with_feature_count,
)
from jaxsal.interpreters.base import interpreter, require_key
from jaxsal.interpreters.gradient import simple_grad
from jaxsal.interpreters.shap_sampling import (
    gradient_shap_draws,
    kernel_shap_samples,
    lime_samples,
    shapley_permutations,
    weighted_linear_fit,
)

KERNEL_SHAP_INF_WEIGHT = 1e6  # Captum's weight of the all-on and all-off coalitions
DISTANCES = ("cosine", "euclidean")


def _masked_scores(params, x, c, ref, mask):
    """z (k, N, M) or (k, M) -> logit_c of x with the features off in z set to the reference."""

    def run(z):
        on = features_on(z, mask, x.shape)
        return class_scores(params, c, jnp.where(on, x[None], ref[None]))

    return run


def _features_setup(method: str, x, key, feature_mask, n_features, baseline, n_samples, chunk,
                    *, unit: str, min_features: int = 1, min_samples: int = 1, note: str = ""):  # fmt: skip
    """The checked inputs of a feature-perturbing estimator: (key, n_samples, mask, reference).

    Refuses a missing key, fewer than `min_features` features or `min_samples`
    samples, a bad chunk, a mask or baseline that does not fit x.
    """
    key = require_key(key, method)
    check_count(n_features, "n_features", method, min_features,
                " (the feature ids are 0 .. n_features - 1)")  # fmt: skip
    n_samples = check_count(n_samples, "n_samples", method, min_samples, note)
    check_chunk(chunk, method, unit)
    mask = feature_mask_4d(feature_mask, x.shape, method)
    return key, n_samples, mask, reference_like(baseline, x, method)


def _surrogate(z, y, w, alpha, mask, x):
    """Per image, the weighted linear fit of y (S, N) on z (N, S, M); each pixel its coefficient."""
    fit = jax.vmap(weighted_linear_fit, in_axes=(0, 0, 0, None))
    return per_feature(fit(z.astype(x.dtype), y.T, w, alpha), mask, x.shape)


# ------------------------------------------------------------------ GradientShap


def _gradient_shap_checks(x_shape: tuple, hyper: dict) -> dict:
    s = concrete(hyper.get("stdevs"))
    if s is not None and (
        s.dtype.kind not in "fiu" or np.any(s < 0) or s.size not in (1, x_shape[0])
    ):
        raise ValueError(
            f"gradient_shap: stdevs must be a non-negative noise stdev, a scalar or one per "
            f"image ({x_shape[0]}), got {hyper['stdevs']!r}"
        )
    return hyper


@prepared(_gradient_shap_checks)
@interpreter(static=("n_samples", "chunk"))
def gradient_shap(params, x, c, *, key=None, baselines=None, n_samples=5, stdevs=0.0, chunk=None):
    """Expected gradients times (input - baseline) over random baselines and path points.

    Each of `n_samples` samples per image takes a baseline b drawn uniformly
    from `baselines`, a noisy input x' = x + stdevs * noise and a point
    alpha ~ U[0, 1) on the segment, and contributes (x' - b) times the
    gradient at alpha x' + (1 - alpha) b (Captum's GradientShap). The mean
    over samples is returned. Its sum is, in expectation (stdevs = 0),
    f_c(x) - mean_b f_c(b) (completeness). The draws are
    `gradient_shap_draws(key, x.shape, B, n_samples, x.dtype)`.

    Args:
      key: PRNG key for the draws (required).
      baselines: reference images (B, H, W, C) drawn from (required).
      n_samples: samples per image (Captum's default 5).
      stdevs: stdev of the Gaussian noise added to x, a scalar or one per
        image (absolute, in the input's units; default 0).
      chunk: samples per pass (None: all at once).

    Returns:
      Attributions of the shape of x.

    References:
      Lundberg and Lee, A unified approach to interpreting model predictions (2017).
      Captum's `GradientShap`.
    """
    key = require_key(key, "gradient_shap")
    n_samples = check_count(n_samples, "n_samples", "gradient_shap")
    check_chunk(chunk, "gradient_shap", "samples")
    b = baseline_distribution(baselines, x, "gradient_shap")
    index, alpha, noise = gradient_shap_draws(key, x.shape, b.shape[0], n_samples, x.dtype)
    sd = jnp.broadcast_to(
        jnp.reshape(jnp.asarray(stdevs, x.dtype), (-1, 1, 1, 1)), x[:, :1, :1, :1].shape
    )
    xs = x[None] + sd[None] * noise
    bs = b[index]
    a = alpha[..., None, None, None]
    points = a * xs + (1.0 - a) * bs

    def grads(p):
        k, n = p.shape[:2]
        g = simple_grad(params, p.reshape((k * n,) + p.shape[2:]), jnp.tile(c, k))
        return g.reshape(p.shape)

    return ((xs - bs) * map_chunks(grads, points, chunk)).mean(axis=0)


# ------------------------------------------------------------------ KernelSHAP


@with_feature_count
@interpreter(static=("n_features", "n_samples", "chunk"))
def kernel_shap(
    params, x, c, *, key=None, feature_mask=None, n_features=None, baseline=None, n_samples=25,
    chunk=None,
):  # fmt: skip
    """Shapley values of the features from a weighted linear fit (Captum's KernelShap).

    `n_samples` coalitions per image (`kernel_shap_samples`: all on, all off,
    then draws from the Shapley kernel) are evaluated with absent features set
    to the baseline; a linear model is fitted to the class logit by weighted
    least squares, with weight 1e6 on the all-on and all-off coalitions and 1
    on the others (Captum's), and each pixel gets its feature's coefficient.

    Args:
      key: PRNG key for the coalitions (required).
      feature_mask: integer feature ids 0 .. M-1 (e.g. superpixels): (H, W) for all
        images and channels, (N, H, W) one per image, or 4-D broadcastable to x.
      n_features: M (default: read from the concrete mask; pass it when the mask is traced).
      baseline: the value of absent features: scalar or array broadcastable to x (default 0).
      n_samples: coalitions per image, at least 2 (Captum's default 25); more
        than M + 1 for a unique fit.
      chunk: coalitions per forward pass (None: all at once).

    Returns:
      Attributions of the shape of x.

    References:
      Lundberg and Lee, A unified approach to interpreting model predictions (2017).
      Captum's `KernelShap`.
    """
    key, n_samples, mask, ref = _features_setup(
        "kernel_shap", x, key, feature_mask, n_features, baseline, n_samples, chunk,
        unit="coalitions", min_features=2, min_samples=2,
        note=" (the all-on and all-off coalitions come first)")  # fmt: skip
    z = kernel_shap_samples(key, x.shape[0], n_samples, n_features)
    y = map_chunks(_masked_scores(params, x, c, ref, mask), z.transpose(1, 0, 2), chunk)
    size = z.sum(axis=-1)
    w = jnp.where((size == 0) | (size == n_features), KERNEL_SHAP_INF_WEIGHT, 1.0).astype(x.dtype)
    return _surrogate(z, y, w, 0.0, mask, x)


# ------------------------------------------------------------------ LIME


def _lime_checks(x_shape: tuple, hyper: dict) -> dict:
    width, alpha = concrete(hyper.get("kernel_width")), concrete(hyper.get("alpha"))
    if width is not None and not (width.ndim == 0 and width > 0):
        raise ValueError(f"lime: kernel_width must be a positive scalar, got {width!r}")
    if alpha is not None and not (alpha.ndim == 0 and alpha >= 0):
        raise ValueError(
            f"lime: alpha (the ridge penalty) must be a scalar >= 0 (0: least squares), "
            f"got {alpha!r}"
        )
    return hyper


def _distance(x: jax.Array, xs: jax.Array, kind: str) -> jax.Array:
    """Distance of each perturbed image xs (k, N, ...) to its original x (N, ...) -> (k, N)."""
    a = x.reshape(x.shape[0], -1)[None]
    b = xs.reshape(xs.shape[:2] + (-1,))
    if kind == "euclidean":
        return jnp.sqrt(((a - b) ** 2).sum(-1))
    eps = 1e-8  # torch's cosine_similarity clamps each norm at eps
    na = jnp.maximum(jnp.sqrt((a * a).sum(-1)), eps)
    nb = jnp.maximum(jnp.sqrt((b * b).sum(-1)), eps)
    return 1.0 - ((a / na[..., None]) * (b / nb[..., None])).sum(-1)


@prepared(_lime_checks)
@with_feature_count
@interpreter(static=("n_features", "n_samples", "distance", "chunk"))
def lime(
    params, x, c, *, key=None, feature_mask=None, n_features=None, baseline=None, n_samples=25,
    kernel_width=1.0, distance="cosine", alpha=1.0, chunk=None,
):  # fmt: skip
    """A weighted linear surrogate of the class logit over random feature subsets (LIME).

    Each of `n_samples` samples per image switches every feature on with
    probability 1/2 (`lime_samples`), absent features taking the baseline's
    values; it is weighted by exp(-d^2 / (2 kernel_width^2)), d the cosine
    (or Euclidean) distance between the perturbed and the original image
    (Captum's default kernel). The surrogate is a ridge regression with
    penalty `alpha` (Ribeiro et al.'s `lime` package: alpha = 1; 0 for plain
    weighted least squares); each pixel gets its feature's coefficient.
    Captum's `Lime` defaults to a Lasso (alpha 0.01) instead, which has no
    closed form: give it `interpretable_model=SkLearnRidge(alpha=alpha)` (or
    `SkLearnLinearRegression()` for alpha = 0) to compute this map.

    Args:
      key: PRNG key for the samples (required).
      feature_mask: integer feature ids 0 .. M-1: (H, W), (N, H, W), or 4-D
        broadcastable to x.
      n_features: M (default: read from the concrete mask).
      baseline: the value of absent features: scalar or array broadcastable to x (default 0).
      n_samples: samples per image (Captum's default 25).
      kernel_width: width of the exponential similarity kernel (1.0).
      distance: "cosine" (default) or "euclidean".
      alpha: ridge penalty of the surrogate (1.0; 0 for least squares).
      chunk: samples per forward pass (None: all at once).

    Returns:
      Attributions of the shape of x.

    References:
      Ribeiro et al., "Why should I trust you?" (2016). Captum's `Lime`.
    """
    if distance not in DISTANCES:
        raise ValueError(f'lime: unknown distance "{distance}"; choose "cosine" or "euclidean"')
    key, n_samples, mask, ref = _features_setup(
        "lime", x, key, feature_mask, n_features, baseline, n_samples, chunk, unit="samples",
        min_samples=2)  # fmt: skip
    z = lime_samples(key, x.shape[0], n_samples, n_features)

    def run(zk):
        xs = jnp.where(features_on(zk, mask, x.shape), x[None], ref[None])
        return class_scores(params, c, xs), _distance(x, xs, distance)

    y, d = map_chunks(run, z.transpose(1, 0, 2), chunk)
    w = jnp.exp(-(d**2) / (2.0 * jnp.asarray(kernel_width, x.dtype) ** 2))
    return _surrogate(z, y, w.T, jnp.asarray(alpha, x.dtype), mask, x)


# ------------------------------------------------------------------ Shapley Value Sampling


@with_feature_count
@interpreter(static=("n_features", "n_samples", "chunk"))
def shapley_value_sampling(
    params, x, c, *, key=None, feature_mask=None, n_features=None, baseline=None, n_samples=25,
    chunk=None,
):  # fmt: skip
    """Shapley values of the features, averaged over random feature orders.

    For each of `n_samples` orders (`shapley_permutations`, shared by all
    images) the features are added one by one to the baseline; each feature
    gets the change of the class logit when it is added, averaged over the
    orders (Captum's ShapleyValueSampling): n_samples * M forward passes.

    Args:
      key: PRNG key for the orders (required).
      feature_mask: integer feature ids 0 .. M-1: (H, W), (N, H, W), or 4-D
        broadcastable to x.
      n_features: M (default: read from the concrete mask).
      baseline: the value of absent features: scalar or array broadcastable to x (default 0).
      n_samples: feature orders (Captum's default 25).
      chunk: perturbed inputs per forward pass (None: all at once); Captum's
        `perturbations_per_eval`.

    Returns:
      Attributions of the shape of x; per image they sum to f_c(x) - f_c(baseline).

    References:
      Castro et al., Polynomial calculation of the Shapley value based on sampling (2009).
      Captum's `ShapleyValueSampling`.
    """
    key, n_samples, mask, ref = _features_setup(
        "shapley_value_sampling", x, key, feature_mask, n_features, baseline, n_samples, chunk,
        unit="perturbed inputs")  # fmt: skip
    m = n_features
    perms = shapley_permutations(key, n_samples, m)
    rank = jnp.argsort(perms, axis=1)  # rank[s, f]: the step at which feature f is added
    z = rank[:, None, :] <= jnp.arange(m)[None, :, None]  # (S, step, M)
    f = map_chunks(_masked_scores(params, x, c, ref, mask), z.reshape(n_samples * m, m), chunk)
    f = f.reshape(n_samples, m, -1)  # (S, step, N)
    f0 = select_class(params.apply(ref), c)
    before = jnp.concatenate([jnp.broadcast_to(f0, (n_samples, 1, f0.shape[0])), f[:, :-1]], 1)
    gain = jnp.take_along_axis(f - before, rank[:, :, None], axis=1)  # (S, M, N) by feature
    return per_feature(gain.mean(axis=0).T, mask, x.shape)


__all__ = [
    "DISTANCES",
    "KERNEL_SHAP_INF_WEIGHT",
    "gradient_shap",
    "gradient_shap_draws",
    "kernel_shap",
    "kernel_shap_samples",
    "lime",
    "lime_samples",
    "shapley_permutations",
    "shapley_value_sampling",
    "weighted_linear_fit",
]
