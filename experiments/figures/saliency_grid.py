"""Every method of the table on held-out embedded scenes, with their ground-truth boxes.

    python -m experiments.figures.saliency_grid [--out docs/saliency_grid.png] [--workdir runs/figures]

Trains (or loads) the shared base model (`experiments.common.base_model`) and
draws each method's map over test scenes of the version-2 data (digits on
photographs), Grad-CAM-style maps upsampled to the input, the digit's box in
every panel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

from experiments.common import base_model
from jaxsal import methods as table
from jaxsal import viz
from jaxsal.data import PHOTO_MEAN, PHOTO_STD, photo_scenes

METHODS = ("simple_grad", "input_x_grad", "smoothgrad", "integrated_gradients",
           "guided_backprop", "gradcam", "guided_gradcam", "lrp_epsilon_plus", "lrp_t")  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/saliency_grid.png")
    parser.add_argument("--workdir", default="runs/figures")
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args(argv)
    params, _ = base_model(Path(args.workdir) / "models", 0)
    scenes = photo_scenes("test", n=args.n, seed=7)
    key = jax.random.key(0)
    maps = {}
    for name in METHODS:
        m = table.method(name)
        h = m(params, scenes.images, scenes.labels, key=key if m.stochastic else None)
        maps[name] = np.asarray(m.heatmap(h) if m.level == "layer" else h)
    pixels = np.clip(scenes.images[..., 0] * PHOTO_STD + PHOTO_MEAN, 0.0, 1.0)
    fig = viz.grid(pixels, maps, boxes=scenes.boxes, alpha=0.6)
    viz.save(fig, args.out, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
