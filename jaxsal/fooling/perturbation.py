"""Region perturbation curves and AOPC (Samek et al. 2017), as used by Heo et al. 2019.

The image is cut into a grid of square patches; patches are replaced one at a
time, most relevant first (MoRF) by a heatmap, least relevant first (LeRF), or
in random order (the baseline), and the class score is recorded after each
step. AOPC averages the score drop over the steps: a good heatmap drops the
score fast, so a higher MoRF AOPC means a more faithful map; a fooled map
whose MoRF AOPC falls below the random baseline highlights regions less useful
than random ones.

Replacement (`reference`): a constant or an image-shaped array, or noise drawn
once per image from `key`: "normal" is N(0, 0.3^2) in the model's input space,
the authors' choice (their `aopc_batch`), "uniform" is U(0, 1) (SPEC section 4),
or a callable `(key, shape, dtype) -> array`. Drawing one noise image and
pasting its patches equals drawing fresh noise for each patch as it is removed.

References:
  Samek, Binder, Montavon, Lapuschkin and Mueller. Evaluating the
  Visualization of What a Deep Neural Network Has Learned. IEEE TNNLS 2017.
  https://arxiv.org/abs/1509.06321
  Heo, Joo and Moon. Fooling Neural Network Interpretations via Adversarial
  Model Manipulation. NeurIPS 2019, section 5 (figure 4a).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ORDERS = ("morf", "lerf", "random")
NORMAL_STD = 0.3


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    ph, pw = v
    return int(ph), int(pw)


def _grid(x_shape, heatmap, patch) -> tuple[int, int, int, int]:
    """Patch size and grid size; the heatmap's resolution sets the grid when patch is None."""
    _, height, width, _ = x_shape
    if patch is None:
        if heatmap is None:
            raise ValueError("pass patch= when no heatmap is given (order='random')")
        hh, hw = heatmap.shape[1:3]
        if height % hh or width % hw:
            raise ValueError(
                f"a {hh}x{hw} heatmap does not tile a {height}x{width} image; pass patch="
            )
        patch = (height // hh, width // hw)
    ph, pw = _pair(patch)
    if ph < 1 or pw < 1 or height % ph or width % pw:
        raise ValueError(
            f"patch {ph}x{pw} must tile the {height}x{width} image exactly (a divisor of H and W)"
        )
    return ph, pw, height // ph, width // pw


def region_relevance(heatmap: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """Heatmap summed over channels and average-pooled onto the patch grid, shape (N, gh*gw)."""
    n, hh, hw, _ = heatmap.shape
    gh, gw = grid
    if hh % gh or hw % gw:
        raise ValueError(
            f"a {hh}x{hw} heatmap cannot be pooled onto a {gh}x{gw} patch grid; give a heatmap "
            "at the grid's resolution or a multiple of it"
        )
    r = heatmap.sum(axis=-1).reshape(n, gh, hh // gh, gw, hw // gw).mean(axis=(2, 4))
    return r.reshape(n, gh * gw)


def _reference_image(reference, x: jax.Array, key) -> jax.Array:
    if isinstance(reference, str) or callable(reference):
        if key is None:
            raise ValueError(f"reference={reference!r} draws noise: pass key=jax.random.key(...)")
        if reference == "normal":
            return NORMAL_STD * jax.random.normal(key, x.shape, x.dtype)
        if reference == "uniform":
            return jax.random.uniform(key, x.shape, x.dtype)
        if isinstance(reference, str):
            raise ValueError(
                f'unknown reference "{reference}"; use "normal", "uniform", a number, an array '
                "broadcastable to x, or a callable (key, shape, dtype) -> array"
            )
        return jnp.asarray(reference(key, x.shape, x.dtype), x.dtype)
    r = jnp.asarray(reference, x.dtype)
    if r.ndim not in (0, x.ndim):
        raise ValueError(f"reference of shape {r.shape} must be a number or have rank {x.ndim}")
    return jnp.broadcast_to(r, x.shape)


def perturbation_curve(
    model_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    c,
    heatmap: jax.Array | None,
    *,
    steps: int | None = None,
    patch: int | tuple[int, int] | None = None,
    order: str = "morf",
    reference: float | str | jax.Array | Callable = "normal",
    key: jax.Array | None = None,
) -> jax.Array:
    """Class scores while patches are replaced in MoRF, LeRF or random order.

    Args:
      model_fn: any callable from an NHWC batch to logits (N, classes), e.g.
        `functools.partial(jaxsal.logits, params)`; wrap it in a softmax to
        track probabilities instead.
      x: images, shape (N, H, W, C).
      c: class per image: an int or shape (N,).
      heatmap: relevance maps (N, h, w, channels), summed over channels and
        average-pooled onto the patch grid; at the grid's resolution (e.g. a
        7x7 Grad-CAM map) or a multiple of it (an input-level map). Ties go to
        the lower flat index. May be None for order="random" with `patch` set.
      steps: number of patches removed, K; all of them when None.
      patch: patch side (int or (ph, pw)), dividing H and W; when None,
        `H // h`, so each heatmap cell is one patch.
      order: "morf" (most relevant first), "lerf" (least relevant first) or
        "random" (one permutation per image from `key`).
      reference: what a removed patch becomes (see the module docstring):
        a number, an array broadcastable to x, "normal", "uniform" or a
        callable (key, shape, dtype) -> array.
      key: PRNG key, needed for noise references and the random order.

    Returns:
      Shape (N, K + 1): `f_c(x_k)` for k = 0..K, column 0 the unperturbed score.

    References:
      Samek et al. 2017 (region perturbation, MoRF).
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be an NHWC batch (N, H, W, C), got shape {x.shape}")
    n = x.shape[0]
    if heatmap is not None:
        heatmap = jnp.asarray(heatmap)
        if heatmap.ndim != 4 or heatmap.shape[0] != n:
            raise ValueError(
                f"heatmap must have shape ({n}, h, w, channels) to match x, got {heatmap.shape}"
            )
    if order not in ORDERS:
        raise ValueError(f'unknown order "{order}"; use one of {", ".join(ORDERS)}')
    ph, pw, gh, gw = _grid(x.shape, heatmap, patch)
    regions = gh * gw
    steps = regions if steps is None else int(steps)
    if not 0 <= steps <= regions:
        raise ValueError(f"steps must be in [0, {regions}] for a {gh}x{gw} patch grid, got {steps}")

    key_order = key_noise = None
    if key is not None:
        key_order, key_noise = jax.random.split(key)
    if order == "random":
        if key_order is None:
            raise ValueError("order='random' needs key=jax.random.key(...)")
        perm = jnp.argsort(jax.random.uniform(key_order, (n, regions)), axis=1)
    else:
        if heatmap is None:
            raise ValueError(f"order={order!r} needs a heatmap")
        rel = region_relevance(heatmap, (gh, gw))
        perm = jnp.argsort(-rel if order == "morf" else rel, axis=1, stable=True)
    removed_at = jnp.argsort(perm, axis=1).reshape(n, gh, gw)  # step at which a patch goes
    removed_at = jnp.repeat(jnp.repeat(removed_at, ph, axis=1), pw, axis=2)[..., None]
    ref = _reference_image(reference, x, key_noise)
    c = jnp.broadcast_to(jnp.asarray(c), (n,))

    def score(k):
        xk = jnp.where(removed_at < k, ref, x)
        return model_fn(xk)[jnp.arange(n), c]

    return jax.lax.map(score, jnp.arange(steps + 1)).T


def aopc(curve: jax.Array, *, cumulative: bool = False) -> jax.Array:
    """Area over the perturbation curve, per image.

    `AOPC = 1 / (K + 1) * sum_{k=0}^{K} (f(x_0) - f(x_k))` (the k = 0 term is
    zero); average the result over images for the data-set AOPC.

    Args:
      curve: scores from `perturbation_curve`, shape (N, K + 1).
      cumulative: return AOPC_K for every K = 0..K (the curves of Heo et al.'s
        figure 4a) instead of the final value.

    Returns:
      Shape (N,), or (N, K + 1) when `cumulative`.

    References:
      Samek et al. 2017 (the AOPC definition).
    """
    curve = jnp.asarray(curve)
    if curve.ndim != 2:
        raise ValueError(f"curve must have shape (N, K + 1), got {curve.shape}")
    drop = curve[:, :1] - curve
    if cumulative:
        count = jnp.arange(1, curve.shape[1] + 1, dtype=drop.dtype).reshape(1, -1)
        return jnp.cumsum(drop, axis=1) / count
    return drop.mean(axis=1)
