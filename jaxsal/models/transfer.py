"""Transfer models: a jaxsal backbone's features with a new head (the trustworthy-CNN set-up).

`TransferNet` puts a new 1x1 conv (256 filters, stride 1, ReLU), global
average pooling and a dense softmax layer on the `features` stack of a
jaxsal backbone (MobileNetV2, VGG or the small CNN): the transfer-learning
set-up of Halliwell & Lecue (section 4.1). `transfer_model` builds it with
the backbone's trained weights and a fresh head; train the head alone with
`jaxsal.train.fit(..., trainable=("head", "classifier"))`. It is a
registered model class, so `jaxsal.save` / `jaxsal.load` handle it.

The backbone is frozen, so its features can be computed once per image
(`transfer_features`) and the new layers trained on them alone:
`transfer_head` is a `TransferHead` (the same layers with the same parameter
paths, taking the features as its input) and `with_head` puts its trained
parameters back into the `TransferNet`. Grad-CAM at `head` only looks at
the layers after the features, so it is the same on both models; an
input-level map (Guided Grad-CAM) needs the whole `TransferNet`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsal.models.layers import AdaptiveAvgPool, Conv, Flatten, Linear, ReLU
from jaxsal.models.mobilenet import MobileNetFeatures, MobileNetV2
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.models.vgg import VGG, VGGFeatures
from jaxsal.params import ModelParams


def backbone_features(module: nn.Module) -> nn.Module:
    """The `features` stack of a jaxsal backbone, as a fresh (unbound) module."""
    if isinstance(module, MobileNetV2):
        return MobileNetFeatures(name="features")
    if isinstance(module, VGG):
        return VGGFeatures(module.cfg, name="features")
    if isinstance(module, SmallCNN):
        return VGGFeatures(module.widths, module.batch_norm, name="features")
    raise ValueError(
        f"transfer heads support MobileNetV2, VGG and SmallCNN backbones, not "
        f"{type(module).__name__}"
    )


class TransferNet(nn.Module):
    """Backbone features, a new 1x1 conv with ReLU, global average pooling, a dense head.

    Parameter paths: `features.*` (the backbone's), `head.0` (the new conv,
    ReLU at `head.1`) and `classifier` (the softmax layer's dense part).
    """

    backbone: nn.Module
    num_classes: int = 2
    filters: int = 256
    jaxsal_name = "transfer_net"

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @nn.compact
    def __call__(self, x):
        return _new_layers(backbone_features(self.backbone)(x), self.num_classes, self.filters)

    def layer_aliases(self) -> dict[str, str]:
        return dict(HEAD_ALIASES)


HEAD_ALIASES = (("target", "head.1"), ("last_conv", "head.1"), ("head", "head.1"))


def _new_layers(x, num_classes: int, filters: int):
    """The new layers (called inside a compact `__call__`, so they belong to its module)."""
    x = Conv(filters, 1, name="head.0")(x)
    x = ReLU(name="head.1")(x)
    x = AdaptiveAvgPool(1, name="avgpool")(x)
    x = Flatten(name="flatten")(x)
    return Linear(num_classes, name="classifier")(x)


class TransferHead(nn.Module):
    """The new layers of a `TransferNet` alone, on the backbone's features (NHWC).

    Same layers and parameter paths (`head.0`, `classifier`) as the
    `TransferNet`; `in_channels` is the features' channel count.
    """

    in_channels: int
    num_classes: int = 2
    filters: int = 256
    jaxsal_name = "transfer_head"

    @nn.compact
    def __call__(self, x):
        return _new_layers(x, self.num_classes, self.filters)

    def layer_aliases(self) -> dict[str, str]:
        return dict(HEAD_ALIASES)


def transfer_model(
    backbone: ModelParams, key: jax.Array, *, num_classes: int = 2, filters: int = 256
) -> ModelParams:
    """A `TransferNet` whose features carry the backbone's trained weights.

    Args:
      backbone: e.g. MobileNetV2 from `weights_convert.from_torchvision`.
      key: PRNG key of the new layers' initialisation.
      num_classes: classes of the new task (2 for cats vs dogs).
      filters: channels of the new 1x1 conv (256 in the paper).

    Returns:
      `ModelParams`; train the head with `fit(..., trainable=("head", "classifier"))`.
    """
    module = TransferNet(backbone.module, num_classes, filters)
    dtype = jax.tree.leaves(backbone.params)[0].dtype
    # Only the new layers are initialised (small modules); the backbone is traced, not compiled.
    feats = backbone_features(backbone.module)
    shape = (1, 64, 64, backbone.module.in_channels)
    out = jax.eval_shape(lambda v, x: feats.apply(v, x), {"params": backbone.params["features"],
                         **{k: v["features"] for k, v in backbone.state.items()}},
                         jax.ShapeDtypeStruct(shape, dtype))  # fmt: skip
    k1, k2 = jax.random.split(key)
    f = jnp.result_type(float)  # the initialisers' default dtype (float64 under x64); cast after
    conv = Conv(filters, 1).init(k1, jnp.zeros((1, 1, 1, out.shape[-1]), f))["params"]
    dense = Linear(num_classes).init(k2, jnp.zeros((1, filters), f))["params"]
    params = {"features": backbone.params["features"], "head.0": conv, "classifier": dense}
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    state = {k: {"features": v["features"]} for k, v in backbone.state.items()}
    out = ModelParams(module=module, params=params, state=state).with_conv(backbone.spec.conv)
    return out.with_beta(backbone.beta)


NEW_LAYERS = ("head.0", "classifier")


def _check_transfer(params: ModelParams) -> TransferNet:
    if not isinstance(params.module, TransferNet):
        raise TypeError(f"a TransferNet model is needed, got {type(params.module).__name__}")
    return params.module


def transfer_features(params: ModelParams, x: jax.Array) -> jax.Array:
    """The backbone's features of a `TransferNet` (the input of `head.0`), NHWC."""
    from jaxsal.forward import features

    _check_transfer(params)
    return features(params, x, ["features"])["features"]


def transfer_head(params: ModelParams) -> ModelParams:
    """The new layers of a `TransferNet` as a `TransferHead` model (same arrays, beta, conv)."""
    module = _check_transfer(params)
    kernel = params.params["head.0"]["kernel"]
    head = TransferHead(int(kernel.shape[2]), module.num_classes, module.filters)
    new = {k: params.params[k] for k in NEW_LAYERS}
    out = ModelParams(module=head, params=new, state={}).with_conv(params.spec.conv)
    return out.with_beta(params.beta)


def with_head(params: ModelParams, head: ModelParams) -> ModelParams:
    """The `TransferNet` `params` with the new layers' arrays of `head` (a `TransferHead`)."""
    _check_transfer(params)
    if not isinstance(head.module, TransferHead):
        raise TypeError(f"a TransferHead model is needed, got {type(head.module).__name__}")
    return params.replace(params={**params.params, **{k: head.params[k] for k in NEW_LAYERS}})
