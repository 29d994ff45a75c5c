"""Saliency pictures checked pixel by pixel on tiny images against hand-computed colours.

"bwr" runs blue (0, 0, 1) -> white (1, 1, 1) -> red (1, 0, 0) linearly, so a signed value v in
[-1, 1] (vmax 1) gets (1 - max(-v, 0), 1 - |v|, 1 - max(v, 0)): `bwr` below. The endpoint
colours were read once from matplotlib and are written as literals.
"""

from __future__ import annotations

import jax.numpy as jnp
import matplotlib
import matplotlib.image
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from jaxsal import viz  # noqa: E402

RED, WHITE, BLUE = (1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)
# matplotlib's "inferno" table entries 0, 128 and 255 (values 0, 0.5 and 1 of the range).
INFERNO_0 = (0.001462, 0.000466, 0.013866)
INFERNO_HALF = (0.735683, 0.215906, 0.330245)
INFERNO_1 = (0.988362, 0.998364, 0.644924)

H = np.array([[1.0, 0.0], [0.0, -1.0]])
GREY = np.array([[0.2, 0.4], [0.6, 0.8]])
# H upsampled 2x2 -> 4x4 with half-pixel centres: source rows/columns -0.25 (clamped to 0),
# 0.25, 0.75, 1.25 (clamped to 1), so 1-D [a, b] -> [a, .75a + .25b, .25a + .75b, b].
H_BILINEAR = np.array(
    [
        [1.0, 0.75, 0.25, 0.0],
        [0.75, 0.5, 0.0, -0.25],
        [0.25, 0.0, -0.5, -0.75],
        [0.0, -0.25, -0.75, -1.0],
    ]
)
H_NEAREST = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, -1, -1], [0, 0, -1, -1]], float)


def bwr(v):
    v = np.asarray(v, float)
    return np.stack([1 - np.maximum(-v, 0), 1 - np.abs(v), 1 - np.maximum(v, 0)], -1)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b, float), rtol=0, atol=1e-12)


def test_signed_colours_by_hand():
    close(viz.heatmap_rgb(H), [[RED, WHITE], [WHITE, BLUE]])
    close(viz.heatmap_rgb(jnp.asarray(H)[..., None]), [[RED, WHITE], [WHITE, BLUE]])
    close(bwr(H), [[RED, WHITE], [WHITE, BLUE]])  # the formula agrees with the literals
    close(viz.heatmap_rgb(H_BILINEAR), bwr(H_BILINEAR))
    # vmax: 0.5 is half-way to red, -2 is clipped to blue.
    close(viz.heatmap_rgb(np.array([[0.5, -2.0]]), vmax=1.0), [[(1.0, 0.5, 0.5), BLUE]])


def test_absolute_colours_by_hand():
    want = [[INFERNO_0, INFERNO_1], [INFERNO_HALF, INFERNO_1]]
    close(viz.heatmap_rgb(np.array([[0.0, 4.0], [2.0, 4.0]])), want)
    # signed=False takes |h|; vmax clips.
    close(viz.heatmap_rgb(np.array([[-3.0, 1.0]]), signed=False), viz.heatmap_rgb([[3.0, 1.0]]))
    close(viz.heatmap_rgb(np.array([[8.0, 1.0]]), vmax=2.0), [[INFERNO_1, INFERNO_HALF]])


def test_channel_reduction():
    h = np.random.default_rng(0).normal(size=(3, 4, 3))
    close(viz.heatmap_rgb(h), viz.heatmap_rgb(h.sum(-1), signed=True))
    close(viz.heatmap_rgb(h, signed=False), viz.heatmap_rgb(np.abs(h).sum(-1)))


def test_negation_mirrors_colours():
    h = np.random.default_rng(1).normal(size=(6, 7))
    close(viz.heatmap_rgb(-h), viz.heatmap_rgb(h)[..., ::-1])
    close(viz.heatmap_rgb(-h, vmax=0.5), viz.heatmap_rgb(h, vmax=0.5)[..., ::-1])


def test_zero_map():
    close(viz.heatmap_rgb(np.zeros((3, 3)), signed=True), np.broadcast_to(WHITE, (3, 3, 3)))
    close(viz.heatmap_rgb(np.zeros((3, 3))), np.broadcast_to(INFERNO_0, (3, 3, 3)))
    out = viz.overlay(np.zeros((4, 4)), np.zeros((2, 2)), signed=True, alpha=1.0)
    close(out, np.broadcast_to(WHITE, (4, 4, 3)))


def test_overlay_blend_by_hand():
    # 0.25 * colour + 0.75 * grey, pixel by pixel.
    want = [[(0.4, 0.15, 0.15), (0.55, 0.55, 0.55)], [(0.7, 0.7, 0.7), (0.6, 0.6, 0.85)]]
    close(viz.overlay(GREY, H, alpha=0.25), want)
    close(viz.overlay(GREY[..., None], H, alpha=0.25), want)
    close(viz.overlay(np.repeat(GREY[..., None], 3, -1), H, alpha=0.25), want)
    close(viz.overlay(GREY, H, alpha=0.0), np.repeat(GREY[..., None], 3, -1))


def test_upsampling_by_hand():
    close(viz._upsample(H, (4, 4), "bilinear"), H_BILINEAR)
    close(viz._upsample(H, (4, 4), "nearest"), H_NEAREST)
    image = np.full((4, 4), 0.5)
    close(viz.overlay(image, H, alpha=1.0), bwr(H_BILINEAR))
    close(viz.overlay(image, H, alpha=1.0, interpolation="nearest"), bwr(H_NEAREST))
    # The scale is the map's own max: a 3x3 peak of 1 upsampled to 4x4 is 0.625 ** 2 at most
    # (source rows and columns 0.625 and 1.375), coloured as 0.390625 of the range.
    peak = np.zeros((3, 3))
    peak[1, 1] = 1.0
    out = viz.overlay(np.zeros((4, 4)), peak, alpha=1.0)
    close(out[1:3, 1:3], np.broadcast_to(viz.heatmap_rgb([[0.390625, 1.0]])[0, 0], (2, 2, 3)))


@pytest.mark.parametrize("shape,size", [((7, 7), (224, 224)), ((3, 5), (10, 17)), ((2, 3), (2, 9))])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsampling_matches_torch(shape, size, mode):
    m = np.random.default_rng(2).normal(size=shape)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    want = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size, mode=mode, **kw)
    close(viz._upsample(m, size, mode), want[0, 0].numpy())


def test_grid_axes_titles_and_boxes():
    rng = np.random.default_rng(3)
    images = rng.random((2, 8, 8, 3))
    maps = {"grad": rng.normal(size=(2, 8, 8, 3)), "gradcam": jnp.asarray(rng.random((2, 2, 2)))}
    boxes = np.array([[1, 2, 5, 6], [0, 0, 8, 8]])
    fig = viz.grid(images, maps, row_labels=["cat", "dog"], boxes=boxes)
    axes = fig.get_axes()
    assert len(axes) == 2 * 3
    assert [ax.get_title() for ax in axes[:3]] == ["image", "grad", "gradcam"]
    assert axes[3].get_ylabel() == "dog"
    close(axes[3].images[0].get_array(), images[1])
    rects = [p for p in axes[1].patches if isinstance(p, Rectangle)]
    assert len(rects) == 1 and rects[0].get_xy() == (1.5, 0.5)  # pixel edges of (y0, x0)
    assert (rects[0].get_width(), rects[0].get_height()) == (4, 4)
    fig = viz.grid(images[:1, ..., 0], {"a": maps["grad"][:1]}, titles=["A"], overlay=False)
    assert len(fig.get_axes()) == 2 and fig.get_axes()[1].get_title() == "A"
    assert not fig.get_axes()[1].patches  # no boxes asked for, none drawn
    close(fig.get_axes()[1].images[0].get_array(), viz.heatmap_rgb(maps["grad"][0]))


def test_save(tmp_path):
    fig = viz.grid(np.zeros((1, 4, 4)), {"m": np.ones((1, 4, 4))})
    path = viz.save(fig, tmp_path / "new" / "dir" / "fig.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError, match=r"fig.png exists; pass overwrite=True"):
        viz.save(fig, path)
    viz.save(fig, path, overwrite=True)
    colours = viz.overlay(GREY, H, alpha=0.25)
    png = viz.save(colours, tmp_path / "overlay.png")
    np.testing.assert_allclose(
        matplotlib.image.imread(png)[..., :3], colours, atol=0.5 / 255 + 1e-6
    )
    managed = plt.figure()
    viz.save(managed, tmp_path / "pyplot.png")
    assert managed.number not in plt.get_fignums()  # closed after saving


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: viz.heatmap_rgb(np.zeros((2, 2, 2, 2))), ValueError, r"expected \(H, W\) or"),
        (lambda: viz.heatmap_rgb(np.zeros((0, 2))), ValueError, "is empty"),
        (lambda: viz.heatmap_rgb(np.array([[np.nan]])), ValueError, "NaN or infinite"),
        (lambda: viz.heatmap_rgb(H, vmax=0.0), ValueError, "vmax must be positive"),
        (lambda: viz.heatmap_rgb(H, cmap="nope"), ValueError, 'unknown colormap "nope"'),
        (lambda: viz.overlay(GREY * 2, H), ValueError, r"\[0, 1\], found \[0.4, 1.6\]: divide"),
        (lambda: viz.overlay(GREY - 1, H), ValueError, "imagenet_display"),
        (lambda: viz.overlay(np.zeros((2, 2), np.uint8), H), TypeError, "image / 255"),
        (lambda: viz.overlay(np.zeros((1, 2, 2, 3)), H), ValueError, r"expected \(H, W\), "),
        (lambda: viz.overlay(np.zeros((2, 2, 4)), H), ValueError, r"\(H, W, 3\)"),
        (lambda: viz.overlay(GREY, np.zeros((4, 4))), ValueError, "larger than the image"),
        (lambda: viz.overlay(np.zeros((4, 2)), np.zeros((3, 3))), ValueError, "only upsamples"),
        (lambda: viz.overlay(GREY, H, alpha=1.5), ValueError, r"alpha must lie in \[0, 1\]"),
        (lambda: viz.overlay(GREY, H, interpolation="cubic"), ValueError, '"bilinear" or'),
        (lambda: viz.grid(np.zeros((1, 2, 2)), [H]), TypeError, "maps must be a non-empty dict"),
        (lambda: viz.grid(np.zeros((2, 2, 2)), {"g": H[None]}), ValueError, 'map "g" has shape'),
        (
            lambda: viz.grid(np.zeros((1, 2, 2)), {"g": H[None] * 9}, titles=[]),
            ValueError,
            "titles",
        ),
        (lambda: viz.grid(np.zeros((1, 2, 2)), {"g": H[None]}, boxes=[1, 2]), ValueError, "boxes"),
        (
            lambda: viz.grid(np.zeros((1, 2, 2)), {"g": np.zeros((1, 3, 3))}),
            ValueError,
            'map "g", image 0',
        ),
        (lambda: viz.save(np.zeros((2, 2, 3)), "out.jpg"), ValueError, r'name the file "\*.png"'),
        (lambda: viz.save(np.zeros((2, 2, 5)), "out.png"), ValueError, "image of shape"),
    ],
)
def test_bad_inputs_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()
