"""The random draws of the Shapley-value estimators and LIME, and their weighted linear fit.

Each estimator of `jaxsal.interpreters.shap` draws its samples from `key`
alone through one of these functions, public so that another library can be
fed exactly the same draws (Captum's `perturb_func`, `permutation_generator`
and GradientShap's baselines and points on the segment):

- `gradient_shap_draws`: baseline index, point on the segment, input noise;
- `kernel_shap_samples`: coalitions following the Shapley kernel;
- `lime_samples`: uniform coalitions;
- `shapley_permutations`: feature orders.

`weighted_linear_fit` is the surrogate fit of KernelSHAP and LIME
(scikit-learn's `LinearRegression` / `Ridge` with sample weights, in JAX).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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
