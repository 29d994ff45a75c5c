"""The pointing game on PASCAL VOC07 (`jaxsal.data.voc`), with a 20-class checkpoint.

`voc_pointing(params, examples, table, ...)` explains every class present in
every image with each map function of `table` and scores the pointing game
(the centre baseline included); `run_voc(workdir, config)` does it for a
config of source "voc07" with the study's methods and references and writes
`voc07.json` and `voc07.md`. The weights must be a VOC-finetuned model
(TorchRay's VGG16 / ResNet50 pointing models, converted with
`weights_convert.from_torchvision(arch, state_dict, num_classes=20)`), and
`voc/2007` prepared in the TFDS data directory (`tfds build voc/2007`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import as_json, markdown_table, output_names, write_json
from experiments.pointing import explain
from experiments.pointing.config import REFERENCED, StudyConfig
from jaxsal import pointing as pg


def _as_maps(fn: Callable) -> Callable:
    """`fn(params, x, c, key=...) -> (N, H, W[, 1])` as `run(params, x, c, key) -> (N, H, W)`."""

    def run(p, x, c, key):
        return np.asarray(fn(p, x, c, key=key), np.float64).reshape(x.shape[:3])

    return run


def voc_pointing(params, exs, table: dict[str, Callable], *, tolerance: float = pg.TOLERANCE,
                 key, skip_difficult: bool = False, ties: str = "centroid",
                 batch: int | None = None) -> dict[str, dict]:  # fmt: skip
    """The pointing game on VOC examples, every class present explained.

    Args:
      params: a 20-class model.
      exs: `VocExample`s, all of the same size.
      table: {name: fn(params, x, c, key) -> (N, H, W) maps} (`_as_maps` wraps an explainer).
      tolerance: pixels (15 at 224 px).
      key: PRNG key.
      skip_difficult: explain only classes with a non-difficult object.
      ties: the tie rule (`jaxsal.pointing.peaks`; "random" draws with a seed from `key`).
      batch: explanations per call (None: all at once).

    Returns:
      {name: pointing_accuracy(...) with "seconds"}, the centre baseline included.
    """
    from jaxsal.data.voc import explanation_targets

    targets = explanation_targets(exs, skip_difficult=skip_difficult)
    x = np.stack([exs[i].image for i, _, _ in targets])
    c = np.asarray([k for _, k, _ in targets])
    boxes = [b for _, _, b in targets]
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    step = batch or len(x)
    out = {}
    for j, (name, fn) in enumerate(table.items()):
        t0 = time.perf_counter()
        maps = np.concatenate([fn(params, jnp.asarray(x[lo : lo + step]),
                                  jnp.asarray(c[lo : lo + step]),
                                  jax.random.fold_in(jax.random.fold_in(key, j), lo))
                               for lo in range(0, len(x), step)])  # fmt: skip
        hits = pg.pointing_hits(maps, boxes, tolerance=tolerance, ties=ties, seed=(seed, j))
        out[name] = {**pg.pointing_accuracy(hits, c), "seconds": time.perf_counter() - t0}
    centre = pg.centre_maps(len(x), x.shape[1:3])
    hits = pg.pointing_hits(centre, boxes, tolerance=tolerance, ties=ties, seed=(seed, -1))
    out["centre"] = pg.pointing_accuracy(hits, c)
    return out


def study_table(config: StudyConfig, *, progress: bool = False) -> dict[str, Callable]:
    """The study's methods (every reference for the perturbation ones) as VOC map functions."""
    from jaxsal.data.voc import IMAGENET_MEAN, IMAGENET_STD

    table = {}
    for name in config.methods:
        if name == "centre":
            continue
        for ref in config.references if name in REFERENCED else (None,):

            def fn(p, x, c, key, name=name, ref=ref):
                r = None
                if ref is not None:
                    r = explain.reference_image(ref, x, jax.random.fold_in(key, 7),
                                                mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                                sigma=config.blur_sigma)  # fmt: skip
                return explain.maps_of(name, p, x, c, key=key, settings=config.settings,
                                       reference=r, progress=progress)  # fmt: skip

            table[f"{name}/{ref}" if ref else name] = fn
    return table


def run_voc(workdir: Path, config: StudyConfig, *, progress: bool = True,
            log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """The VOC07 pointing game of `config` (source "voc07"); writes voc07.json and voc07.md."""
    import jaxsal
    from jaxsal.data import voc

    if not config.checkpoint:
        raise ValueError("the VOC07 pointing game needs --checkpoint DIR (a 20-class model)")
    params = jaxsal.load(config.checkpoint)
    v = config.voc
    src = voc.source(v.split, data_dir=v.data_dir)
    indices = range(len(src) if v.images is None else min(v.images, len(src)))
    exs = list(voc.examples(src, indices=indices, size=v.size))
    tol = pg.scaled_tolerance(v.size) if config.tolerance is None else config.tolerance
    results = {}
    for s in range(config.seeds):
        results[s] = voc_pointing(params, exs, study_table(config, progress=progress),
                                  tolerance=tol, key=jax.random.key(s),
                                  skip_difficult=v.skip_difficult, ties=config.ties[0],
                                  batch=config.part)  # fmt: skip
        log(f"seed {s}: " + ", ".join(f"{k} {r['mean_over_classes']:.3f}"
                                      for k, r in results[s].items()))  # fmt: skip
    json_path, md_path = output_names(workdir, ("voc07.json", "voc07.md"))
    out = {"config": as_json(config), "images": len(exs), "tolerance_px": tol, "seeds": results}
    write_json(json_path, out)
    rows = [[k, *[f"{100 * results[s][k]['mean_over_classes']:.1f}" for s in results]]
            for k in results[0]]  # fmt: skip
    md_path.write_text("# VOC07 pointing game (mean over classes, %)\n\n" + markdown_table(
        ["maps", *[f"seed {s}" for s in results]], rows) + "\n")  # fmt: skip
    return {**out, "paths": [str(json_path), str(md_path)]}
