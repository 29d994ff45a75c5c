"""A tiny second-order fooling run for the training engine's tests, in one or several processes.

The objective is `CE + lam * location_penalty(gradcam_heatmap(Grad-CAM))` on a
tiny small_cnn in float64, so the engine's second-order path is exercised.

One process (8 local CPU devices):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multiprocess_training.py \
      --out ref.npz --steps 6
Two processes on localhost, 4 CPU devices each (same 8-device mesh):
  XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/multiprocess_training.py \
      --out mp.npz --steps 6 --num-processes 2 --process-id {0,1} --port 12345
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

BATCH = 8
SIZE = 32
CLASSES = 4
WIDTHS = (4, "M", 8, "M", 8)
LAM = 2.0
LR = 1e-2


@functools.lru_cache
def tiny_params(dtype=jnp.float64, widths=WIDTHS):
    """A tiny small_cnn (1 channel, 4 classes) with fixed random weights (cached: immutable)."""
    from jaxsal.models.small_cnn import SmallCNN
    from jaxsal.params import init_module

    module = SmallCNN(num_classes=CLASSES, widths=widths)
    return init_module(module, jax.random.key(0), dtype=dtype)


def fooling_loss(params, batch, params0):
    """Cross-entropy plus lam times the Location penalty of the Grad-CAM map (second order)."""
    from jaxsal.fooling.penalties import location_penalty
    from jaxsal.interpreters import gradcam
    from jaxsal.postprocess import gradcam_heatmap

    del params0
    x, y = batch["image"], batch["label"]
    logits = params.apply(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    h = gradcam_heatmap(gradcam(params, x, y, layer="target", relu=True))
    penalty = location_penalty(h)
    return ce + LAM * penalty, {"ce": ce, "penalty": penalty}


def batch_at(step, dtype=np.float64):
    """The global batch of `step`: a pure function of the step."""
    rng = np.random.default_rng((7, int(step)))
    return {
        "image": rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype(dtype),
        "label": rng.integers(0, CLASSES, BATCH).astype(np.int32),
    }


def run(*, steps, workdir=None, checkpoint_every=100, mesh=None, batch_fn=batch_at):
    """Fine-tunes `tiny_params()` on `fooling_loss` with Adam: (params, history)."""
    from jaxsal import train

    return train.fit(
        fooling_loss,
        tiny_params(),
        batch_fn,
        tx=optax.adam(LR),
        steps=steps,
        frozen=tiny_params(),
        workdir=workdir,
        checkpoint_every=checkpoint_every,
        mesh=mesh,
        config={"lam": LAM, "lr": LR, "widths": WIDTHS},
        progress=False,
    )


def flat_params(params):
    """{path: NumPy array} of the trainable params."""
    flat = jax.tree_util.tree_flatten_with_path(params.params)[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per batch (kill tests)")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"localhost:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    seen = []

    def batch_fn(step):
        seen.append(step)
        time.sleep(args.sleep)
        return batch_at(step)

    params, history = run(
        steps=args.steps,
        workdir=args.workdir,
        checkpoint_every=args.checkpoint_every,
        batch_fn=batch_fn,
    )
    arrays = flat_params(params)
    if jax.process_index() == 0:
        np.savez(args.out, **arrays)
        meta = {
            "history": history,
            "first_step": min(seen, default=None),
            "devices": jax.device_count(),
        }
        with open(args.out + ".json", "w") as f:
            json.dump(meta, f)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
