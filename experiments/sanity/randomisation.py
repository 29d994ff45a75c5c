"""Model and data randomisation of Adebayo et al. for one model: maps and per-scene similarities.

Every method comes from the one method table (`jaxsal.methods`) with the study's
sample counts; `Explainer` adapts it to the `explain(params, x, c, key)` form of
`jaxsal.sanity` and brings layer-level maps (Grad-CAM) to the input's size
(bilinear), so that every similarity compares input-sized maps.

Randomisation works on *groups* of parameterised layers: with BatchNorm, a conv
and the BatchNorm after it form one group (randomising a conv but keeping the
statistics it was normalised with would test the BatchNorm, not the layer).
`group_masks` turns the groups into the cascading and independent masks of
`jaxsal.sanity.randomized_maps` over the parameterised layers.

Similarities (`compare`) are per scene, over the whole image and inside the
scene's ground-truth box (`jaxsal.sanity.similarities(..., boxes=)`).

References:
  Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim. Sanity checks for
  saliency maps. NeurIPS 2018, sections 4 and 5.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from experiments.sanity.config import SanityConfig
from jaxsal import postprocess
from jaxsal.methods import Method, method
from jaxsal.params import ModelParams
from jaxsal.sanity import METRICS, cascading_masks, parameter_layers, randomized_maps, similarities

REGIONS = ("whole", "box")


@dataclasses.dataclass(frozen=True)
class Explainer:
    """`explain(params, x, c, key)` of a method: its raw map at the input's size (hashable)."""

    method: Method

    def __call__(self, params, x, c, key):
        h = self.method(params, x, c, key=key)
        if h.shape[1:3] != x.shape[1:3]:  # layer-level maps (Grad-CAM)
            h = postprocess.upsample(h, x.shape[1:3], "bilinear")
        return h


def study_method(name: str, config: SanityConfig) -> Method:
    """The table's method `name` with the study's sample counts and noise level."""
    m = method(name)
    if name == "smoothgrad":
        return m.using(samples=config.smoothgrad_samples, noise_level=config.noise_level)
    if name == "vargrad":
        return m.using(samples=config.vargrad_samples, noise_level=config.noise_level)
    return m.using(steps=config.ig_steps)


def explainers(config: SanityConfig, names=None) -> dict[str, Explainer]:
    """{name: Explainer} of the config's methods (or of `names`)."""
    return {n: Explainer(study_method(n, config)) for n in (names or config.methods)}


def _is_batchnorm(params: ModelParams, name: str) -> bool:
    node = params.params
    for part in name.split("."):
        node = node[part]
    return "scale" in node and "kernel" not in node


def layer_groups(params: ModelParams, *, group_batchnorm: bool = True) -> list[list[str]]:
    """The parameterised layers in groups, input first: a BatchNorm joins the layer before it."""
    groups: list[list[str]] = []
    for name in parameter_layers(params):
        if group_batchnorm and groups and _is_batchnorm(params, name):
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def group_masks(groups: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Cascading (G + 1, L) and independent (G, L) masks over the L layers of G groups.

    Cascading row k randomises the top k groups (row 0: none); independent row g
    randomises group g alone.
    """
    owner = np.concatenate([[g] * len(names) for g, names in enumerate(groups)])
    by_group = cascading_masks(len(groups))  # (G + 1, G)
    return by_group[:, owner], np.eye(len(groups), dtype=bool)[:, owner]


def _batches(n: int, size: int):
    """Index arrays of `size` scenes each; the last one padded by repeating its last scene."""
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        yield idx, np.pad(idx, (0, size - len(idx)), mode="edge")


def compare(a: np.ndarray, b: np.ndarray, boxes: np.ndarray) -> dict:
    """{"whole": {metric: (n,)}, "box": {metric: (n,)}} between two stacks of raw maps."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    return {"whole": similarities(a, b), "box": similarities(a, b, boxes=boxes)}


def maps_of(params, x, c, explain: Explainer, *, key, batch_size: int) -> np.ndarray:
    """The raw maps (n, H, W, C) of one model, `batch_size` scenes per call."""
    fn = jax.jit(explain)
    out = []
    for i, (idx, pad) in enumerate(_batches(len(x), batch_size)):
        m = fn(params, jnp.asarray(x[pad]), jnp.asarray(c[pad]), jax.random.fold_in(key, i))
        out.append(np.asarray(m)[: len(idx)])
    return np.concatenate(out)


def model_randomisation(params, fresh, x, c, boxes, explain: Explainer, *, groups, key,
                        batch_size: int, keep: int) -> dict:  # fmt: skip
    """Cascading and independent randomisation of one method on n scenes.

    Args:
      params: the trained model; fresh: its fresh draw (`jaxsal.sanity.fresh_params`).
      x, c, boxes: scenes (n, H, W, C), classes (n,), boxes (n, 4).
      explain: the method.
      groups: `layer_groups(params)`.
      key: PRNG key (batch i uses `fold_in(key, i)`, the same for every randomisation).
      batch_size: scenes per call.
      keep: scenes whose maps are kept for the figure.

    Returns:
      {"cascading": {region: {metric: (G + 1, n)}}, "independent": {... (G, n)},
      "trained": (n, H, W, C) maps of the trained model, "cascade_maps": (G + 1, keep, ...)}.
    """
    cascading, independent = group_masks(groups)
    masks = np.concatenate([cascading, independent])
    layers = tuple(name for g in groups for name in g)  # parameter_layers' order
    rows = []
    for i, (idx, pad) in enumerate(_batches(len(x), batch_size)):
        m = randomized_maps(params, jnp.asarray(x[pad]), jnp.asarray(c[pad]), explain, masks,
                            key=jax.random.fold_in(key, i), layers=layers, fresh=fresh)  # fmt: skip
        rows.append(np.asarray(m)[:, : len(idx)])
    maps = np.concatenate(rows, axis=1)  # (S, n, H, W, C)
    s, n = maps.shape[:2]
    scores = compare(np.broadcast_to(maps[0], maps.shape).reshape((s * n,) + maps.shape[2:]),
                     maps.reshape((s * n,) + maps.shape[2:]), np.tile(boxes, (s, 1)))  # fmt: skip
    g = len(cascading)
    out = {"cascading": {}, "independent": {}}
    for region in REGIONS:
        table = {k: v.reshape(s, n) for k, v in scores[region].items()}
        out["cascading"][region] = {k: v[:g] for k, v in table.items()}
        out["independent"][region] = {k: v[g:] for k, v in table.items()}
    out["trained"] = maps[0]
    out["cascade_maps"] = maps[:g, :keep]
    return out


def other_scene(maps: np.ndarray, boxes: np.ndarray) -> dict:
    """The floor: each scene's map against the same method's map of the next scene.

    Box scores use the first scene's box for both maps (the same pixels).
    """
    return compare(maps, np.roll(maps, -1, axis=0), boxes)


def empty_scores(n: int) -> dict:
    """NaN scores of every region and metric (a baseline that was not computed)."""
    return {r: {m: np.full(n, np.nan) for m in METRICS} for r in REGIONS}
