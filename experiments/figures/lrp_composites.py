"""LRP maps of every composite on a photograph, for VGG16 and ResNet50 with random weights.

    python -m experiments.figures.lrp_composites [--out docs/lrp_composites.png]

Pretrained weights cannot be downloaded here, so the models carry torchvision's
random initialisation (converted with `weights_convert`); the figure shows
how the composites differ, not what a trained network sees.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

import jaxsal
from experiments.common import photo_batch
from jaxsal import viz

COMPOSITES = ("paper", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
              "epsilon_gamma_box")  # fmt: skip


def random_torchvision(arch: str, seed: int = 0) -> jaxsal.ModelParams:
    """A torchvision model with random weights (BatchNorm statistics randomised), converted."""
    import torch

    from weights_convert import from_torchvision
    from weights_convert.torch_reference import torch_model

    model = torch_model(arch, num_classes=1000, seed=seed, dtype=torch.float32)
    return from_torchvision(arch, model.state_dict(), dtype=jnp.float32)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="docs/lrp_composites.png")
    args = parser.parse_args(argv)
    x, pixels = photo_batch(("chelsea",), size=args.size)
    maps = {}
    for arch in args.archs:
        params = random_torchvision(arch)
        c = int(np.argmax(np.asarray(jaxsal.logits(params, x))[0]))
        for name in COMPOSITES:
            maps[f"{arch}\n{name}"] = np.asarray(jaxsal.lrp.attribute(params, x, c,
                                                                      composite=name))  # fmt: skip
    images = np.repeat(pixels, 1, axis=0)
    fig = viz.grid(images, maps, overlay=False, signed=True)
    viz.save(fig, args.out, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
