"""Training with the trustworthy loss: one trainable layer, data-parallel jitted steps.

- `trainable_mask` / `masked_optimizer`: only the named layers are updated
  (optax.multi_transform with `set_to_zero` for the rest), as in the paper,
  which freezes every layer but one (section 3.2).
- `TransferNet` / `transfer_model`: a jaxsal backbone's `features` plus a new
  1x1 conv (256 filters, stride 1, ReLU) and a softmax (dense) head, the
  paper's transfer-learning set-up on MobileNetV2 (section 4.1).
- `make_step`: one jitted step, batch sharded on its leading axis over a
  `Mesh` of devices, parameters and optimiser state replicated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxsal.models.layers import AdaptiveAvgPool, Conv, Flatten, Linear, ReLU
from jaxsal.models.mobilenet import MobileNetFeatures, MobileNetV2
from jaxsal.models.small_cnn import SmallCNN
from jaxsal.models.vgg import VGG, VGGFeatures
from jaxsal.params import ModelParams
from jaxsal.trust.losses import TrustConfig, trust_terms

# ---------------------------------------------------------------- frozen layers


def _path_names(params) -> list[str]:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [".".join(str(getattr(k, "key", k)) for k in path) for path, _ in flat]


def trainable_mask(params: ModelParams, layers: Sequence[str]):
    """A pytree of bools over `params.params`: True for leaves under one of `layers`.

    Args:
      params: the model.
      layers: torchvision-style module paths ("features.11", "head", "classifier").

    Raises:
      ValueError: a layer owns no parameter (the message lists the layers that do).
    """
    names = _path_names(params.params)
    layers = tuple(layers)
    owned = {
        layer: [n for n in names if n == layer or n.startswith(layer + ".")] for layer in layers
    }
    empty = [layer for layer, hits in owned.items() if not hits]
    if empty:
        known = sorted({n.rsplit(".", 1)[0] for n in names})
        raise ValueError(
            f"layers {empty} hold no parameters; layers with parameters: {', '.join(known)}"
        )
    flags = [any(n == la or n.startswith(la + ".") for la in layers) for n in names]
    treedef = jax.tree.structure(params.params)
    return jax.tree.unflatten(treedef, flags)


def masked_optimizer(
    tx: optax.GradientTransformation, params: ModelParams, layers: Sequence[str]
) -> optax.GradientTransformation:
    """`tx` on the parameters of `layers`; every other parameter gets a zero update.

    Args:
      tx: the optimiser of the trained layer (e.g. `optax.sgd(0.01)`).
      params: the model (its parameter tree gives the labels).
      layers: module paths to train; all others are frozen.

    Returns:
      An optax transformation to `init` on `params.params`.
    """
    mask = trainable_mask(params, layers)
    labels = jax.tree.map(lambda m: "train" if m else "freeze", mask)
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


# ---------------------------------------------------------------- transfer model


def backbone_features(module: nn.Module) -> nn.Module:
    """The `features` stack of a jaxsal backbone, as a fresh (unbound) module."""
    if isinstance(module, MobileNetV2):
        return MobileNetFeatures(name="features")
    if isinstance(module, VGG):
        return VGGFeatures(module.cfg, name="features")
    if isinstance(module, SmallCNN):
        return VGGFeatures(module.widths, name="features")
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
        x = backbone_features(self.backbone)(x)
        x = Conv(self.filters, 1, name="head.0")(x)
        x = ReLU(name="head.1")(x)
        x = AdaptiveAvgPool(1, name="avgpool")(x)
        x = Flatten(name="flatten")(x)
        return Linear(self.num_classes, name="classifier")(x)

    def layer_aliases(self) -> dict[str, str]:
        return {"target": "head.1", "last_conv": "head.1", "head": "head.1"}


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
      `ModelParams`; train it with `masked_optimizer(tx, p, ("head", "classifier"))`.
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
    return ModelParams(module=module, params=params, state=state).with_beta(backbone.beta)


# ---------------------------------------------------------------- the step


def device_mesh(devices=None) -> Mesh:
    """A 1-D mesh (axis "batch") over `devices` (default: all)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("batch",))


def make_step(config: TrustConfig, tx: optax.GradientTransformation, mesh: Mesh) -> Callable:
    """A jitted, data-parallel `step(params, opt_state, batch) -> (params, opt_state, metrics)`.

    The batch ({"image", "label"} and "box" for the ground-truth variant) is
    sharded on its leading axis over `mesh`; params and optimiser state are
    replicated. The loss is the global batch mean (the same number on any
    device count). Only `params.params` is updated.

    Returns:
      The step; metrics are the batch means of loss, ce, s, r1, r2 and accuracy.
    """
    rep = NamedSharding(mesh, PartitionSpec())
    shard = NamedSharding(mesh, PartitionSpec("batch"))

    def step(params, opt_state, batch):
        def loss(p):
            t = trust_terms(params.replace(params=p), batch["image"], batch["label"],
                            batch.get("box"), config=config)  # fmt: skip
            return t["loss"].mean(), t

        (value, t), grads = jax.value_and_grad(loss, has_aux=True)(params.params)
        updates, opt_state = tx.update(grads, opt_state, params.params)
        new = params.replace(params=optax.apply_updates(params.params, updates))
        acc = (jnp.argmax(t["logits"], -1) == batch["label"]).mean()
        metrics = {k: t[k].mean() for k in ("ce", "s", "r1", "r2")}
        return new, opt_state, {**metrics, "loss": value, "accuracy": acc}

    jitted = jax.jit(step, out_shardings=(rep, rep, rep), donate_argnums=(0, 1))

    def run(params, opt_state, batch):
        n = len(batch["label"])
        if n % mesh.size:
            raise ValueError(
                f"batch of {n} does not split over {mesh.size} devices; use a batch size "
                f"that is a multiple of {mesh.size} (drop_remainder=True)"
            )
        batch = {k: jax.device_put(np.asarray(v), shard) for k, v in batch.items()}
        return jitted(params, opt_state, batch)

    return run


def fit(
    params: ModelParams,
    data: Iterable[dict],
    *,
    config: TrustConfig,
    tx: optax.GradientTransformation,
    steps: int,
    mesh: Mesh | None = None,
    progress: bool = True,
    desc: str = "trust",
) -> tuple[ModelParams, list[dict[str, float]]]:
    """Runs `steps` data-parallel steps of the trustworthy loss.

    Args:
      params: the starting model (not modified; a trained copy is returned).
      data: batches {"image", "label"(, "box")} of NumPy arrays.
      config: the loss.
      tx: the optimiser, usually `masked_optimizer(...)` (one trainable layer).
      steps: number of steps (fewer if `data` runs out).
      mesh: device mesh (default: all devices).
      progress: show a tqdm bar.
      desc: the bar's label.

    Returns:
      The trained params and the metrics of every step.
    """
    mesh = mesh or device_mesh()
    rep = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put(jax.tree.map(jnp.array, params), rep)  # a copy: steps donate
    opt_state = jax.device_put(tx.init(params.params), rep)
    step = make_step(config, tx, mesh)
    history: list[dict[str, float]] = []
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for _, batch in zip(range(steps), data):
        params, opt_state, m = step(params, opt_state, batch)
        history.append({k: float(v) for k, v in m.items()})
        bar.update()
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
    bar.close()
    return params, history
