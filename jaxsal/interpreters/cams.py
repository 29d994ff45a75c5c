"""The gradient-weighted CAM family and Eigen-CAM, as defined by pytorch-grad-cam 1.5.7.

Each method weights the channels of a named layer's activation A (N, h, w, K)
with the gradient g = d logit_c / dA and returns the map at the layer's
resolution, (N, h, w, 1), rectified (pytorch-grad-cam applies `max(cam, 0)`
to every method's map; `relu=False` keeps the signed sum):

| method | map |
|---|---|
| `gradcam_plusplus` | sum_k w_k A_k, w_k = sum_ij relu(g) g^2 / (2 g^2 + g^3 sum_ij A_k + 1e-6) |
| `xgradcam` | sum_k w_k A_k, w_k = sum_ij g A_k / (sum_ij A_k + 1e-7) |
| `hirescam` | sum_k g A_k (element-wise, no spatial averaging) |
| `layercam` | sum_k relu(g) A_k |
| `eigencam` | projection of the centred activations on their first principal direction |

The gradient is that of the raw logit, as pytorch-grad-cam's
`ClassifierOutputTarget` takes it (Grad-CAM++'s paper writes exp(S_c); the
library, and so jaxsal, use the logit itself). pytorch-grad-cam then
min-max normalises each map and resizes it to the input (`scale_cam` here
does the same); jaxsal's interpreters return the raw map, like `gradcam`.

Score-CAM and Ablation-CAM, which score masked forward passes, are in
`jaxsal.interpreters.cams_perturbation`.

References:
  Chattopadhyay et al., Grad-CAM++: improved visual explanations for deep
  convolutional networks (WACV 2018).
  Fu et al., Axiom-based Grad-CAM: towards accurate visualization and
  explanation of CNNs (BMVC 2020) (XGrad-CAM).
  Draelos and Carin, Use HiResCAM instead of Grad-CAM for faithful
  explanations of convolutional neural networks (2020).
  Jiang et al., LayerCAM: exploring hierarchical class activation maps for
  localization (IEEE TIP 2021).
  Muhammad and Yeasin, Eigen-CAM: class activation map using principal
  components (IJCNN 2020).
  Gildenblat et al., pytorch-grad-cam (2021), https://github.com/jacobgil/pytorch-grad-cam.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsal.forward import class_grads, forward, resolve_layer
from jaxsal.interpreters.base import interpreter
from jaxsal.postprocess import normalize, upsample

GRADCAM_PP_EPS = 1e-6  # pytorch-grad-cam's GradCAMPlusPlus
XGRADCAM_EPS = 1e-7  # pytorch-grad-cam's XGradCAM
SCALE_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def spatial(acts: jax.Array, method: str, layer: str) -> jax.Array:
    """The layer's activation, refused unless it is a spatial (N, h, w, K) map."""
    if acts.ndim != 4:
        raise ValueError(
            f'{method} needs a spatial layer with output (N, h, w, channels); layer "{layer}" '
            f'gives shape {tuple(acts.shape)}. Pick a convolutional layer, e.g. layer="target"'
        )
    return acts


def acts_and_grads(params, x, c, layer: str, method: str) -> tuple[jax.Array, jax.Array]:
    """Activation A and gradient d logit_c / dA at a named layer (alias resolved)."""
    name = resolve_layer(params, layer)
    _, _, acts, grads = class_grads(params, x, c, layers=(name,), wrt_input=False)
    return spatial(acts[name], method, layer), grads[name]


def weighted(weights: jax.Array, acts: jax.Array, relu: bool) -> jax.Array:
    """sum_k weights_k A_k with keepdims on channels; weights (N, 1, 1, K) or (N, h, w, K)."""
    cam = jnp.sum(weights * acts, axis=-1, keepdims=True)
    return jax.nn.relu(cam) if relu else cam


def _spatial_sum(a: jax.Array) -> jax.Array:
    return a.sum(axis=(1, 2), keepdims=True)


@interpreter(static=("layer", "relu"))
def gradcam_plusplus(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """Grad-CAM++ at a named layer, at that layer's resolution.

    The channel weights are pytorch-grad-cam's (the paper's Eq. 19 with the
    logit's gradients): w_k = sum_ij relu(g_ij) a_ij with
    a_ij = g_ij^2 / (2 g_ij^2 + g_ij^3 sum_ij A_k + 1e-6). Entries with g <= 0
    contribute nothing; they are kept out of the division so that the map's
    own gradient stays finite (second order).

    Args:
      params: a `ModelParams`.
      x: NHWC batch.
      c: class index, an int or one per image.
      key: unused.
      layer: torchvision path or alias; default the fooling paper's target layer.
      relu: rectify the map (as pytorch-grad-cam does); False keeps the signed sum.

    Returns:
      The map, shape (N, h, w, 1); `scale_cam` gives pytorch-grad-cam's image.

    References:
      Chattopadhyay et al., Grad-CAM++ (WACV 2018).
    """
    del key
    acts, g = acts_and_grads(params, x, c, layer, "gradcam_plusplus")
    positive = g > 0
    g2 = g * g
    den = 2 * g2 + _spatial_sum(acts) * (g2 * g) + GRADCAM_PP_EPS
    alpha = g2 / jnp.where(positive, den, 1.0)
    weights = _spatial_sum(jnp.where(positive, g * alpha, 0.0))
    return weighted(weights, acts, relu)


@interpreter(static=("layer", "relu"))
def xgradcam(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """XGrad-CAM: channel weights sum_ij g A_k / (sum_ij A_k + 1e-7), shape (N, h, w, 1).

    Args:
      layer: torchvision path or alias (default "target").
      relu: rectify the map (as pytorch-grad-cam does).

    References:
      Fu et al., Axiom-based Grad-CAM (BMVC 2020).
    """
    del key
    acts, g = acts_and_grads(params, x, c, layer, "xgradcam")
    weights = _spatial_sum(g * acts / (_spatial_sum(acts) + XGRADCAM_EPS))
    return weighted(weights, acts, relu)


@interpreter(static=("layer", "relu"))
def hirescam(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """HiResCAM: sum_k g_k * A_k element-wise (no spatial averaging), shape (N, h, w, 1).

    Args:
      layer: torchvision path or alias (default "target").
      relu: rectify the map (as pytorch-grad-cam does).

    References:
      Draelos and Carin, Use HiResCAM instead of Grad-CAM (2020).
    """
    del key
    acts, g = acts_and_grads(params, x, c, layer, "hirescam")
    return weighted(g, acts, relu)


@interpreter(static=("layer", "relu"))
def layercam(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """LayerCAM: sum_k relu(g_k) * A_k element-wise, shape (N, h, w, 1).

    Args:
      layer: torchvision path or alias (default "target"); LayerCAM is meant
        for shallow layers too.
      relu: rectify the map (as pytorch-grad-cam does).

    References:
      Jiang et al., LayerCAM (IEEE TIP 2021).
    """
    del key
    acts, g = acts_and_grads(params, x, c, layer, "layercam")
    return weighted(jax.nn.relu(g), acts, relu)


@interpreter(static=("layer", "relu"))
def eigencam(params, x, c, *, key=None, layer: str = "target", relu: bool = True):
    """Eigen-CAM: the activations' first principal component, shape (N, h, w, 1).

    Per image, the activations are reshaped to (h w, K), centred over the
    positions, and projected on the first right singular vector v, as
    pytorch-grad-cam's `get_2d_projection` does. The class is not used.

    A singular vector's sign is arbitrary (pytorch-grad-cam keeps whatever
    LAPACK returns). jaxsal fixes it so that sum_k v_k >= 0: then the map is
    positively correlated with the channel-summed activation (the projection
    of the total activation map is s_1^2 sum_k v_k), i.e. positive where the
    layer fires most. pytorch-grad-cam's map equals this one or its negative.

    Args:
      layer: torchvision path or alias (default "target").
      relu: rectify the map (as pytorch-grad-cam does).

    References:
      Muhammad and Yeasin, Eigen-CAM (IJCNN 2020).
    """
    del key, c
    name = resolve_layer(params, layer)
    acts = spatial(forward(params, x, taps=(name,))[1][name], "eigencam", layer)
    n, h, w, k = acts.shape
    a = acts.reshape(n, h * w, k)
    a = a - a.mean(axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(a, full_matrices=False)
    v = vt[:, 0, :]  # (N, K)
    v = v * jnp.where(v.sum(axis=-1, keepdims=True) < 0, -1.0, 1.0)
    cam = jnp.einsum("npk,nk->np", a, v).reshape(n, h, w, 1)
    return jax.nn.relu(cam) if relu else cam


def scale_cam(cam: jax.Array, size: tuple[int, int], eps: float = SCALE_EPS) -> jax.Array:
    """pytorch-grad-cam's image of a raw map: min-max, bilinear resize to `size`, min-max.

    `BaseCAM.__call__` rectifies the map, scales it to [0, 1] (`(cam - min) /
    (max + 1e-7)` after the shift), resizes it with `cv2.resize` (bilinear,
    half-pixel centres, as `upsample`) and scales it once more; it does this in
    float32, jaxsal in the map's dtype.

    Args:
      cam: raw maps (N, h, w, 1), rectified (the interpreters' default).
      size: (H, W), the input's size.
      eps: the scaling's stabiliser (pytorch-grad-cam's 1e-7).

    Returns:
      Maps (N, H, W, 1) in [0, 1].
    """
    return normalize(upsample(normalize(cam, eps), size, method="bilinear"), eps)
