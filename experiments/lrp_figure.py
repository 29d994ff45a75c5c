"""The README's LRP figure: maps of every built-in composite on a real photo.

The photo is scikit-image's `chelsea` (a cat), resized to 224 px and normalised
like torchvision's inputs. The models have random weights (torchvision's
initialisation, converted to jaxsal): pretrained weights cannot be downloaded
here, so the maps show how each composite distributes relevance over the
image's structure, not what a trained network has learnt.

    python -m experiments.lrp_figure                       # writes docs/lrp_composites.png
    python -m experiments.lrp_figure --archs vgg16 --size 112 --out /tmp/lrp.png   # quicker
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import jaxsal
from jaxsal.lrp import attribute as lrp
from jaxsal.lrp.rules import IMAGENET_MEAN, IMAGENET_STD

COMPOSITES = ("paper", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
              "epsilon_gamma_box")  # fmt: skip


def photo(size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image in [0, 1], its torchvision-normalised NHWC batch of one)."""
    from skimage import data, transform

    img = data.chelsea().astype(np.float64) / 255.0
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = transform.resize(
        img[top : top + side, left : left + side], (size, size), anti_aliasing=True
    )
    x = (img - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return img, x[None].astype(np.float32)


def random_torchvision(arch: str, seed: int = 0):
    """A torchvision model with random weights (BatchNorm statistics randomised), converted."""
    import torch

    from weights_convert import from_torchvision
    from weights_convert.torch_reference import torch_model

    model = torch_model(arch, num_classes=1000, seed=seed, dtype=torch.float32)
    return from_torchvision(arch, model.state_dict(), dtype=jnp.float32)


def composite_maps(params, x, composites=COMPOSITES) -> dict[str, np.ndarray]:
    """Relevance summed over colour channels, (H, W), for the top class, per composite."""
    c = int(np.argmax(np.asarray(jaxsal.logits(params, x))[0]))
    return {name: np.asarray(lrp(params, x, c, composite=name))[0].sum(-1) for name in composites}


def plot(img, rows: dict[str, dict[str, np.ndarray]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(rows.values())))
    fig, axes = plt.subplots(
        len(rows), len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.4 * len(rows))
    )
    axes = np.atleast_2d(axes)
    for r, (arch, maps) in enumerate(rows.items()):
        axes[r, 0].imshow(img)
        axes[r, 0].set_title("input" if r == 0 else "", fontsize=9)
        axes[r, 0].set_ylabel(arch, fontsize=10)
        for k, name in enumerate(names, start=1):
            m = maps[name]
            top = np.abs(m).max() + 1e-12
            axes[r, k].imshow(m / top, cmap="bwr", vmin=-1, vmax=1)
            if r == 0:
                axes[r, k].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "LRP maps by composite (red positive, blue negative; each map scaled by its max |R|).\n"
        "Random weights (torchvision initialisation): pretrained weights cannot be downloaded here.",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--out", default="docs/lrp_composites.png")
    args = parser.parse_args(argv)
    img, x = photo(args.size)
    rows = {arch: composite_maps(random_torchvision(arch), x) for arch in args.archs}
    plot(img, rows, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
