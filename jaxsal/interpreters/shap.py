"""Shapley-value estimators and LIME: GradientShap, KernelSHAP, LIME, Shapley Value Sampling.

Captum 0.9's methods with the interpreter signature. Each draws its random
samples from `key` alone, with a public function that returns exactly the
draws it uses (`gradient_shap_draws`, `kernel_shap_samples`, `lime_samples`,
`shapley_permutations`), so that another library can be fed the same ones.

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

import functools

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

KERNEL_SHAP_INF_WEIGHT = 1e6  # Captum's weight of the all-on and all-off coalitions
DISTANCES = ("cosine", "euclidean")

# ------------------------------------------------------------------ draws


@functools.partial(jax.jit, static_argnames=("x_shape", "n_baselines", "n_samples", "dtype"))
def gradient_shap_draws(key, x_shape, n_baselines: int, n_samples: int, dtype=None):
    """GradientShap's draws: `(index, alpha, noise)`, with alpha and noise of `dtype`.

    `x_shape` is a tuple, `dtype` that of x (default: JAX's default float).

    Returns:
      index: (n_samples, N) ints, the baseline of each sample, uniform in [0, B).
      alpha: (n_samples, N) uniform in [0, 1), the point on the segment.
      noise: (n_samples, N, H, W, C) standard normal, scaled by `stdevs`.
    """
    k_index, k_alpha, k_noise = jax.random.split(key, 3)
    dtype = jnp.result_type(float) if dtype is None else dtype
    n = x_shape[0]
    index = jax.random.randint(k_index, (n_samples, n), 0, n_baselines)
    alpha = jax.random.uniform(k_alpha, (n_samples, n), dtype)
    noise = jax.random.normal(k_noise, (n_samples,) + tuple(x_shape), dtype)
    return index, alpha, noise


@functools.partial(jax.jit, static_argnames=("n", "n_samples", "n_features"))
def kernel_shap_samples(key, n: int, n_samples: int, n_features: int) -> jax.Array:
    """KernelSHAP's coalitions, (n, n_samples, M) booleans (True: the feature is present).

    As Captum draws them: all features on, all off, then `n_samples - 2`
    coalitions whose size k in 1 .. M-1 is drawn with p(k) proportional to
    (M - 1) / (k (M - k)) and whose members are a uniform subset of that
    size (the k largest of M standard normals), so that with unit weights
    the sample follows the Shapley kernel.
    """
    m = n_features
    k_size, k_members = jax.random.split(key)
    sizes = np.arange(1, m)
    logits = jnp.asarray(np.log((m - 1) / (sizes * (m - sizes))))
    size = jax.random.categorical(k_size, logits, shape=(n, n_samples - 2)) + 1
    scores = jax.random.normal(k_members, (n, n_samples - 2, m))
    rank = jnp.argsort(jnp.argsort(scores, axis=-1), axis=-1)
    drawn = rank >= m - size[..., None]
    ends = jnp.stack([jnp.ones((n, m), bool), jnp.zeros((n, m), bool)], axis=1)
    return jnp.concatenate([ends, drawn], axis=1)


@functools.partial(jax.jit, static_argnames=("n", "n_samples", "n_features"))
def lime_samples(key, n: int, n_samples: int, n_features: int) -> jax.Array:
    """LIME's samples, (n, n_samples, M) booleans: each feature on with probability 1/2."""
    return jax.random.bernoulli(key, 0.5, (n, n_samples, n_features))


@functools.partial(jax.jit, static_argnames=("n_samples", "n_features"))
def shapley_permutations(key, n_samples: int, n_features: int) -> jax.Array:
    """Shapley Value Sampling's feature orders, (n_samples, M), shared by all images."""
    return jax.vmap(lambda k: jax.random.permutation(k, n_features))(
        jax.random.split(key, n_samples)
    )


# ------------------------------------------------------------------ shared pieces


def weighted_linear_fit(z: jax.Array, y: jax.Array, w: jax.Array, alpha) -> jax.Array:
    """Coefficients of y ~ b0 + z @ coef by weighted least squares, ridge penalty `alpha`.

    Minimises sum_s w_s (y_s - b0 - z_s . coef)^2 + alpha |coef|^2 (the
    intercept is not penalised) as scikit-learn does: centre z and y by their
    weighted means, scale rows by sqrt(w), and solve through an SVD. With
    `alpha = 0` singular values below max(S, M) * eps of the largest are
    dropped, giving the minimum-norm solution of `LinearRegression`.

    Args:
      z: (S, M) design (the interpretable samples).
      y: (S,) targets.
      w: (S,) positive sample weights.
      alpha: ridge penalty (0: least squares).
    """
    sw = w / w.sum()
    zc = (z - (sw @ z)[None]) * jnp.sqrt(w)[:, None]
    yc = (y - sw @ y) * jnp.sqrt(w)
    u, s, vt = jnp.linalg.svd(zc, full_matrices=False)
    cut = jnp.finfo(zc.dtype).eps * max(zc.shape) * s[0]
    keep = (s > cut) | (alpha > 0)
    d = jnp.where(keep, s / jnp.where(keep, s * s + alpha, 1.0), 0.0)
    return vt.T @ (d * (u.T @ yc))


def _masked_scores(params, x, c, ref, mask):
    """z (k, N, M) or (k, M) -> logit_c of x with the features off in z set to the reference."""

    def run(z):
        on = features_on(z, mask, x.shape)
        return class_scores(params, c, jnp.where(on, x[None], ref[None]))

    return run


def _check_features(n_features, method: str, minimum: int = 1) -> None:
    check_count(n_features, "n_features", method, minimum,
                " (the feature ids are 0 .. n_features - 1)")  # fmt: skip


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
    key = require_key(key, "kernel_shap")
    _check_features(n_features, "kernel_shap", 2)
    n_samples = check_count(n_samples, "n_samples", "kernel_shap", 2,
                            " (the all-on and all-off coalitions come first)")  # fmt: skip
    check_chunk(chunk, "kernel_shap", "coalitions")
    mask = feature_mask_4d(feature_mask, x.shape, "kernel_shap")
    ref = reference_like(baseline, x, "kernel_shap")
    z = kernel_shap_samples(key, x.shape[0], n_samples, n_features)
    y = map_chunks(_masked_scores(params, x, c, ref, mask), z.transpose(1, 0, 2), chunk)
    size = z.sum(axis=-1)
    w = jnp.where((size == 0) | (size == n_features), KERNEL_SHAP_INF_WEIGHT, 1.0).astype(x.dtype)
    fit = jax.vmap(weighted_linear_fit, in_axes=(0, 0, 0, None))
    coef = fit(z.astype(x.dtype), y.T, w, 0.0)
    return per_feature(coef, mask, x.shape)


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
    key = require_key(key, "lime")
    _check_features(n_features, "lime")
    n_samples = check_count(n_samples, "n_samples", "lime", 2)
    check_chunk(chunk, "lime", "samples")
    if distance not in DISTANCES:
        raise ValueError(f'lime: unknown distance "{distance}"; choose "cosine" or "euclidean"')
    mask = feature_mask_4d(feature_mask, x.shape, "lime")
    ref = reference_like(baseline, x, "lime")
    z = lime_samples(key, x.shape[0], n_samples, n_features)

    def run(zk):
        xs = jnp.where(features_on(zk, mask, x.shape), x[None], ref[None])
        return class_scores(params, c, xs), _distance(x, xs, distance)

    y, d = map_chunks(run, z.transpose(1, 0, 2), chunk)
    w = jnp.exp(-(d**2) / (2.0 * jnp.asarray(kernel_width, x.dtype) ** 2))
    fit = jax.vmap(weighted_linear_fit, in_axes=(0, 0, 0, None))
    coef = fit(z.astype(x.dtype), y.T, w.T, jnp.asarray(alpha, x.dtype))
    return per_feature(coef, mask, x.shape)


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
    key = require_key(key, "shapley_value_sampling")
    _check_features(n_features, "shapley_value_sampling")
    n_samples = check_count(n_samples, "n_samples", "shapley_value_sampling")
    check_chunk(chunk, "shapley_value_sampling", "perturbed inputs")
    mask = feature_mask_4d(feature_mask, x.shape, "shapley_value_sampling")
    ref = reference_like(baseline, x, "shapley_value_sampling")
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
