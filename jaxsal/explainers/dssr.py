"""DSSR and DSSR+: discriminative perturbation masks at the input's full resolution.

With `x(m) = m * x + (1 - m) * r`, DSSR (eq. 4) minimises

    f(x(m))_c - f(x(1 - m))_c - lambda ||m||_1,      m initialised to 0,

so `m` grows (at Adam's rate) over pixels whose deletion from `x(1 - m)` and
whose preservation in `x(m)` do not matter for class c: the explanation is
`1 - m`, the region whose preservation keeps the class and whose deletion
removes it. Two-stage lambda: `lam` while `f(x(1 - m))_c > theta`, the smaller
`lam_small` once it has fallen to theta or below, so that the preserved score
can recover. The paper gives neither theta nor the smaller lambda; the
defaults here (0.5 and lam / 10) are this library's, and the explanation `1 - m`
is exactly 1 wherever m stayed clipped at 0, so its maximum is usually a
plateau (score pointing games with a tie rule, `jaxsal.pointing`).

DSSR+ (eq. 5) replaces `||m||_1` by `||1 - maxpool(1 - m; k1, s1=1, p1)||_1`
(the sum of a min-pool of m: isolated unmasked pixels among masked ones are
pushed to be masked) and uses the averaged mask `m_bar = avgpool(m; k2, s2=1,
p2=0)` in both score terms. Eq. 5 as printed swaps the two score terms with
respect to eq. 4; with that order the scores and the regulariser would all be
optimal at m = 1 (a trivial solution), so eq. 4's order is used. So that
`m_bar` has the image's size, m is optimised on a canvas `k2 - 1` pixels larger
(the valid average pool shrinks it back). The explanation is `1 - m_bar`.

References:
  Gu, Yang and Tresp. Introducing the DSSR explainer / Semantics for global
  and local interpretation of deep neural networks (2020), sections 3.3-3.4
  and 4: Adam, lr 0.1, lambda = 10 / 224^2, 300 iterations, k1 = 12, p1 = 6,
  k2 = 16, references constant, blur or uniform noise U(0, 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.explainers._core import as_model, check_inputs, optimize
from jaxsal.explainers.references import make_reference


def max_pool(m: jax.Array, k: int, pad: int) -> jax.Array:
    """Stride-1 max-pool of a (H, W) map, zero-size padding ignored (torch's -inf padding)."""
    return jax.lax.reduce_window(m, -jnp.inf, jax.lax.max, (k, k), (1, 1), ((pad, pad), (pad, pad)))


def avg_pool(m: jax.Array, k: int) -> jax.Array:
    """Stride-1, unpadded ("valid") average pool of a (H, W) map: (H - k + 1, W - k + 1)."""
    return jax.lax.reduce_window(m, 0.0, jax.lax.add, (k, k), (1, 1), "VALID") / (k * k)


def _perturb(m, x, r):
    return m[..., None] * x + (1.0 - m[..., None]) * r


def _scores_and_lambda(model, m, d, hyper):
    s = model(jnp.stack([_perturb(m, d["x"], d["r"]), _perturb(1.0 - m, d["x"], d["r"])]))
    s = s[:, d["c"]]
    kept = jax.lax.stop_gradient(s[1])
    lam = jnp.where(kept <= hyper["theta"], hyper["lam_small"], hyper["lam"])
    return s, lam


def _dssr_objective(model, m, d, hyper, t):
    s, lam = _scores_and_lambda(model, m, d, hyper)
    return s[0] - s[1] - lam * m.sum(), s


def _dssr(model, x, c, key, *, plus, reference, steps, lr, lam, lam_small, theta, pools, scores,
          chunk, progress, return_history):  # fmt: skip
    model = as_model(model, scores)
    x, c = check_inputs(model, x, c)
    n, h, w, _ = x.shape
    lam = 10.0 / (h * w) if lam is None else float(lam)
    lam_small = lam / 10.0 if lam_small is None else float(lam_small)
    r = make_reference(reference, x, key)
    hyper = {"lr": lr, "lam": lam, "lam_small": lam_small, "theta": theta}
    if plus:
        k1, p1, k2 = (int(v) for v in pools)
        if min(k1, k2) < 1 or p1 < 0 or 2 * p1 >= k1 + 1 + max(h, w):
            raise ValueError(f"pool sizes must be positive and the padding small, got {pools}")
        objective = _bind_pools(k1, p1, k2)
        m0 = jnp.zeros((n, h + k2 - 1, w + k2 - 1), x.dtype)
        desc = "DSSR+"
    else:
        objective, m0, desc = _dssr_objective, jnp.zeros((n, h, w), x.dtype), "DSSR"
    data = {"x": x, "c": c, "r": r}
    m, hist = optimize(
        objective, model, m0, data, hyper, steps=steps, chunk=chunk, progress=progress, desc=desc
    )
    if plus:
        m = jax.vmap(lambda a: avg_pool(a, k2))(m)
    sal = (1.0 - m)[..., None]
    return (sal, hist) if return_history else sal


_BOUND = {}


def _bind_pools(k1, p1, k2):
    # One module-level function per pool setting, so the compiled chunk is reused.
    if (k1, p1, k2) not in _BOUND:

        def objective(model, m, d, hyper, t):
            m_bar = avg_pool(m, k2)
            s, lam = _scores_and_lambda(model, m_bar, d, hyper)
            reg = (1.0 - max_pool(1.0 - m, k1, p1)).sum()
            return s[0] - s[1] - lam * reg, s

        _BOUND[(k1, p1, k2)] = objective
    return _BOUND[(k1, p1, k2)]


def dssr(
    model,
    x: jax.Array,
    c,
    *,
    key: jax.Array | None = None,
    reference="uniform",
    steps: int = 300,
    lr: float = 0.1,
    lam: float | None = None,
    lam_small: float | None = None,
    theta: float = 0.5,
    scores: str = "softmax",
    chunk: int | None = None,
    progress: bool = False,
    return_history: bool = False,
) -> jax.Array:
    """DSSR (eq. 4): a full-resolution mask from deletion and preservation together.

    Args:
      model: a `ModelParams` or a function `f(x) -> (N, classes)`.
      x: images (N, H, W, C).
      c: class per image (int or (N,)).
      key: PRNG key (needed by the uniform-noise reference).
      reference: see `jaxsal.explainers.references` ("uniform" is U(0, 1)).
      steps: Adam iterations (300 in the paper).
      lr: Adam's learning rate (0.1).
      lam: the larger lambda; default 10 / (H W) (the paper's 10 / 224^2 at 224 px; at other
        sizes the same lambda per share of the image, a choice the paper does not make).
      lam_small: the smaller lambda, used while f(x(1 - m))_c <= theta; default lam / 10.
        Not in the paper (it names a smaller lambda but gives no value): tune it.
      theta: threshold of the two-stage lambda, on the model's scores; default 0.5. Not in
        the paper either.
      scores: what f is: "softmax" probabilities (the paper's), "log_softmax" or "raw".
      chunk: iterations per compiled call (progress bar granularity).
      progress: show a tqdm bar.
      return_history: also return (loss, scores) per step, (N, steps) and (N, steps, 2).

    Returns:
      The explanation `1 - m`, shape (N, H, W, 1), in [0, 1].

    References:
      Gu et al. (2020), eq. 4 and section 4.
    """
    return _dssr(model, x, c, key, plus=False, reference=reference, steps=steps, lr=lr, lam=lam,
                 lam_small=lam_small, theta=theta, pools=None, scores=scores, chunk=chunk,
                 progress=progress, return_history=return_history)  # fmt: skip


def dssr_plus(
    model,
    x: jax.Array,
    c,
    *,
    key: jax.Array | None = None,
    reference="uniform",
    steps: int = 300,
    lr: float = 0.1,
    lam: float | None = None,
    lam_small: float | None = None,
    theta: float = 0.5,
    max_pool_size: int = 12,
    max_pool_pad: int = 6,
    avg_pool_size: int = 16,
    scores: str = "softmax",
    chunk: int | None = None,
    progress: bool = False,
    return_history: bool = False,
) -> jax.Array:
    """DSSR+ (eq. 5): DSSR with the max-pool regulariser and the average-pooled mask.

    Args:
      max_pool_size: k1 (12 at 224 px); stride s1 = 1.
      max_pool_pad: p1 (6 at 224 px).
      avg_pool_size: k2 (16 at 224 px); stride 1, no padding.
      Others: as `dssr`.

    Returns:
      The explanation `1 - m_bar`, shape (N, H, W, 1), in [0, 1].

    References:
      Gu et al. (2020), eq. 5 and section 4.
    """
    pools = (max_pool_size, max_pool_pad, avg_pool_size)
    return _dssr(model, x, c, key, plus=True, reference=reference, steps=steps, lr=lr, lam=lam,
                 lam_small=lam_small, theta=theta, pools=pools, scores=scores, chunk=chunk,
                 progress=progress, return_history=return_history)  # fmt: skip
