"""The one training loop: jitted data-parallel steps, orbax checkpoints, exact resume, progress.

`fit(loss_fn, params, batch_fn, tx=..., steps=...)` runs `make_step` for
`steps` steps. Batches come from `batch_fn(step)`, a pure function of the
step (the GLOBAL batch; every process calls it and feeds its own rows), so a
killed and resumed run sees the very batches an uninterrupted one would and,
the step being deterministic, ends with the same parameters.

With a `workdir`, an orbax `CheckpointManager` in `workdir/checkpoints` keeps
the parameters, the optimiser state and the history of aux values every
`checkpoint_every` steps (the two latest). A run restarts from its latest
checkpoint, after checking that it belongs to the same run (config, model,
parameter shapes, optimiser structure): a foreign checkpoint is refused, never
overwritten. `stop_if(step, history)` can end a run that goes wrong with a
clear error (e.g. `chance_guard`: the loss still at chance level).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from jaxsal.train._mesh import make_mesh, replicate, shard_batch, to_host
from jaxsal.train._step import LossFn, make_step, masked

CHECKPOINTS = "checkpoints"


class TrainingStalled(RuntimeError):
    """A run stopped by its `stop_if` guard (e.g. the loss never left chance level)."""


def chance_guard(num_classes: int, *, at_step: int, margin: float = 0.1, window: int = 20):
    """A `stop_if` that stops a run whose loss is still at chance level at `at_step`.

    Chance level is log(num_classes), the cross-entropy of a uniform guess.
    The guard compares the mean "loss" of the last `window` steps with
    `log(num_classes) - margin`.
    """
    chance = float(np.log(num_classes))

    def stop_if(step: int, history: list[dict]) -> str | None:
        if step != at_step:
            return None
        recent = [h["loss"] for h in history[-window:]]
        mean = float(np.mean(recent))
        if mean > chance - margin:
            return (
                f"the loss is still at chance level after {step} steps (mean of the last "
                f"{len(recent)} steps {mean:.3f}, chance log({num_classes}) = {chance:.3f}); "
                "the model did not start to learn. Check the data and labels, lower the "
                "learning rate or lengthen its warm-up"
            )
        return None

    return stop_if


def signature(params: Any, opt_state: Any, config: Mapping | None) -> dict:
    """What a checkpoint must match to be resumed: config, model and optimiser structure."""

    def spec(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): [list(np.shape(v)), str(v.dtype)] for k, v in leaves}

    return {
        "config": json.loads(json.dumps(config or {}, sort_keys=True, default=str)),
        "model": str(jax.tree.structure(params)),
        "params": spec(params),
        "opt_state": str(jax.tree.structure(opt_state)),
    }


def _mismatch(saved: dict, now: dict) -> str:
    lines = []
    for part in ("config", "model", "params", "opt_state"):
        a, b = saved.get(part), now.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[:5]
            diff = ", ".join(f"{k}: {a.get(k)} (checkpoint) vs {b.get(k)} (now)" for k in keys)
            lines.append(f"{part} differs: {diff}")
        else:
            lines.append(f"{part} differs:\n  checkpoint: {a}\n  now:        {b}")
    return "\n".join(lines)


def checkpoint_manager(workdir: str | Path) -> ocp.CheckpointManager:
    """The orbax manager of `workdir/checkpoints` (keeps the two latest checkpoints)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    return ocp.CheckpointManager(Path(workdir).absolute() / CHECKPOINTS, options=options)


def _restore(mngr, step, params, opt_state, sig):
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    problem = _mismatch(meta, sig)
    if problem:
        raise ValueError(
            f"the checkpoint in {mngr.directory} (step {step}) belongs to a different run:\n"
            f"{problem}\nUse a new workdir, or remove {mngr.directory} to start over."
        )
    leaves, treedef = jax.tree.flatten((params, opt_state))
    abstract = [ocp.utils.to_shape_dtype_struct(a) for a in leaves]
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
        ),
    )
    params, opt_state = jax.tree.unflatten(treedef, list(restored["state"]))
    return params, opt_state, list(restored["history"])


def _save(mngr, step, params, opt_state, history, sig) -> None:
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(jax.tree.leaves((params, opt_state))),
            meta=ocp.args.JsonSave({**sig, "step": step}),
            history=ocp.args.JsonSave(list(history)),
        ),
    )


def fit(
    loss_fn: LossFn,
    params: Any,
    batch_fn: Callable[[int], Mapping[str, np.ndarray]],
    *,
    tx: optax.GradientTransformation,
    steps: int,
    frozen: Any = None,
    trainable: Sequence[str] | None = None,
    project: Callable[[Any], Any] | None = None,
    workdir: str | Path | None = None,
    checkpoint_every: int = 100,
    mesh: Mesh | None = None,
    config: Mapping | None = None,
    stop_if: Callable[[int, list[dict]], str | None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[Any, list[dict[str, float]]]:
    """Trains `params` for `steps` steps of `loss_fn`, resumably and data-parallel.

    Args:
      loss_fn: `loss_fn(params, batch, frozen) -> (loss, aux dict of scalars)`.
      params: the starting parameters (a `ModelParams`, or a pytree holding one).
      batch_fn: `batch_fn(step) -> dict of NumPy arrays`, the GLOBAL batch of `step`;
        deterministic in `step` so that a resumed run sees the same data.
      tx: the optax optimiser; it is applied to the trained leaves only
        (`trainable_mask`: every `ModelParams.params` leaf, or `trainable` layers).
      steps: total number of steps (a resumed run does the remaining ones).
      frozen: what the loss holds fixed (e.g. the original model), or None.
      trainable: module paths to train (None: all parameters).
      project: optional map applied to the params after every update.
      workdir: where `checkpoints/` lives; None trains without checkpoints.
      checkpoint_every: save every this many steps (and after the last).
      mesh: data-parallel mesh (default: every device of every process).
      config: JSON-able description of the run; a checkpoint whose config, model
        or optimiser structure differs is refused.
      stop_if: `stop_if(step, history) -> message or None`, checked after every
        step; a message stops the run with `TrainingStalled`.
      progress: show a tqdm bar with the latest aux values (on process 0).
      desc: the bar's label.

    Returns:
      (params, history): the trained parameters (host arrays) and one dict of aux
      values (floats, with "loss") per step, from step 0.

    Raises:
      ValueError: the checkpoint in `workdir` belongs to a different run.
      TrainingStalled: `stop_if` stopped the run.
    """
    from tqdm.auto import tqdm

    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    mesh = make_mesh() if mesh is None else mesh
    tx = masked(tx, params, trainable)
    frozen = replicate(frozen, mesh)
    params = replicate(params, mesh)
    opt_state = replicate(tx.init(to_host(params)), mesh)
    sig = signature(params, opt_state, config)
    history: list[dict[str, float]] = []
    start = 0
    mngr = checkpoint_manager(workdir) if workdir is not None else None
    if mngr is not None and mngr.latest_step() is not None:
        start = mngr.latest_step()
        params, opt_state, history = _restore(mngr, start, params, opt_state, sig)
        params, opt_state = replicate((params, opt_state), mesh)
        history = history[:start]
    step_fn = make_step(loss_fn, tx, mesh=mesh, project=project)
    bar = tqdm(total=steps, initial=start, desc=desc, dynamic_ncols=True,
               disable=not progress or jax.process_index() != 0)  # fmt: skip

    def record(aux):
        values = {k: float(np.asarray(v.addressable_data(0))) for k, v in aux.items()}
        history.append(values)
        bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        bar.update(1)
        if stop_if is not None:
            message = stop_if(len(history), history)
            if message:
                raise TrainingStalled(message)

    pending = None  # aux of the previous step, read after the next one is dispatched
    try:
        for step in range(start, steps):
            batch = shard_batch(batch_fn(step), mesh)
            params, opt_state, aux = step_fn(params, opt_state, batch, frozen)
            if pending is not None:
                record(pending)
            pending = aux
            done = step + 1
            if mngr is not None and (done % checkpoint_every == 0 or done == steps):
                record(pending)
                pending = None
                _save(mngr, done, params, opt_state, history, sig)
        if pending is not None:
            record(pending)
        if mngr is not None:
            mngr.wait_until_finished()
    finally:
        bar.close()
        if mngr is not None:
            mngr.close()
    return jax.tree.map(jnp.asarray, to_host(params)), history
