"""The fine-tuning engine of the fooling study: one jitted, data-parallel, resumable step loop.

It is generic in the loss: `loss_fn(params, params0, batch) -> (loss, aux)`
with `params` the model being fine-tuned, `params0` the frozen original and
`aux` a dict of scalars (e.g. from `jaxsal.fooling.objective.loss`). Only
`params.params` is trained; `params.state` (BatchNorm statistics) stays as it
is, and the model is always applied in inference mode.

Sharding: one `Mesh` over every device of every process, axis "data". Batch
arrays are sharded on their leading axis; params, optimiser state and
`params0` are replicated, so XLA inserts the all-reduce of the gradients.
Each process feeds only its rows of the global batch
(`jax.make_array_from_process_local_data`).

Resume: an orbax `CheckpointManager` in `workdir/checkpoints` keeps the
trained params, the optimiser state, the step and the history of aux values.
A run restarts from its latest complete checkpoint; since batches are a pure
function of the step and the step is deterministic, a killed and resumed run
ends with the same params as an uninterrupted one.

References:
  Heo et al., Fooling neural network interpretations via adversarial model
  manipulation, NeurIPS 2019 (fine-tuning with CE + lambda * L_F, Adam).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsal.params import ModelParams

AXIS = "data"
CHECKPOINTS = "checkpoints"
LossFn = Callable[[ModelParams, ModelParams, Mapping[str, jax.Array]], tuple[jax.Array, dict]]


def make_mesh(devices=None) -> Mesh:
    """A one-axis ("data") mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array of `tree` as a global array replicated on all devices of `mesh`.

    Works with several processes too: each process supplies the same host value.
    """
    sharding = NamedSharding(mesh, P())

    def put(a):
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a
        host = np.asarray(a.addressable_data(0) if isinstance(a, jax.Array) else a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """The global batch as arrays sharded on their leading axis; each process feeds its rows.

    Args:
      batch: the GLOBAL batch (every process passes the same dict of NumPy arrays).
      mesh: the data-parallel mesh.

    Returns:
      A dict of global `jax.Array`s with sharding `NamedSharding(mesh, P("data"))`.
    """
    sharding = NamedSharding(mesh, P(AXIS))
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % mesh.size:
            raise ValueError(
                f'batch["{name}"] has shape {value.shape}; every batch array needs a leading '
                f"batch axis divisible by the {mesh.size} devices of the mesh"
            )
        rows = sharding.addressable_devices_indices_map(value.shape).values()
        start = min(r[0].start or 0 for r in rows)
        stop = max(value.shape[0] if r[0].stop is None else r[0].stop for r in rows)
        out[name] = jax.make_array_from_process_local_data(sharding, value[start:stop], value.shape)
    return out


def to_host(tree: Any) -> Any:
    """Replicated global arrays as local NumPy arrays (this process's copy)."""
    return jax.tree.map(
        lambda a: np.asarray(a.addressable_data(0) if isinstance(a, jax.Array) else a), tree
    )


def make_step(
    loss_fn: LossFn, tx: optax.GradientTransformation, *, mesh: Mesh | None = None
) -> Callable:
    """One jitted, data-parallel optimisation step.

    Args:
      loss_fn: `loss_fn(params, params0, batch) -> (loss, aux)`, aux a dict of scalars.
      tx: the optax optimiser; its state is `tx.init(params.params)`.
      mesh: the data-parallel mesh (default `make_mesh()`: all devices).

    Returns:
      `step(params, opt_state, params0, batch) -> (params, opt_state, aux)`, a `jax.jit`
      function (forward, interpreter, penalty, second-order gradient and optax update in
      one program); aux holds "loss" and loss_fn's aux. Batch arrays must be sharded
      with `shard_batch` (or be host arrays whose leading axis the mesh divides);
      params, opt_state and params0 are replicated. `opt_state` is donated.
    """
    mesh = make_mesh() if mesh is None else mesh
    rep = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P(AXIS))

    def step(params, opt_state, params0, batch):
        def objective(trainable):
            return loss_fn(params.replace(params=trainable), params0, batch)

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(params.params)
        updates, opt_state = tx.update(grads, opt_state, params.params)
        trained = params.replace(params=optax.apply_updates(params.params, updates))
        return trained, opt_state, {"loss": loss, **aux}

    return jax.jit(
        step,
        in_shardings=(rep, rep, rep, data),
        out_shardings=(rep, rep, rep),
        donate_argnums=(1,),
    )


def signature(params: ModelParams, opt_state: Any, config: Mapping | None) -> dict:
    """What a checkpoint must match to be resumed: config, param and optimiser structure."""

    def spec(tree):
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): [list(np.shape(v)), str(v.dtype)] for k, v in leaves}

    return {
        "config": json.loads(json.dumps(config or {}, sort_keys=True, default=str)),
        "module": repr(params.module),
        "params": spec(params.params),
        "opt_state": str(jax.tree.structure(opt_state)),
    }


def _mismatch(saved: dict, now: dict) -> str:
    lines = []
    for part in ("config", "module", "params", "opt_state"):
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


def _restore(mngr, step, params, opt_state, sig) -> tuple[ModelParams, Any, list]:
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    problem = _mismatch(meta, sig)
    if problem:
        raise ValueError(
            f"the checkpoint in {mngr.directory} (step {step}) belongs to a different run:\n"
            f"{problem}\nUse a new workdir, or remove {mngr.directory} to start over."
        )
    abstract = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, {"params": params.params, "opt_state": opt_state}
    )
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
        ),
    )
    state = restored["state"]
    return params.replace(params=state["params"]), state["opt_state"], restored["history"]


def _save(mngr, step, params, opt_state, history, sig) -> None:
    mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave({"params": params.params, "opt_state": opt_state}),
            meta=ocp.args.JsonSave({**sig, "step": step}),
            history=ocp.args.JsonSave(list(history)),
        ),
    )


def fine_tune(
    loss_fn: LossFn,
    params: ModelParams,
    batch_fn: Callable[[int], Mapping[str, np.ndarray]],
    *,
    tx: optax.GradientTransformation,
    steps: int,
    workdir: str | Path | None = None,
    checkpoint_every: int = 100,
    mesh: Mesh | None = None,
    params0: ModelParams | None = None,
    config: Mapping | None = None,
    progress: bool = True,
    desc: str = "fine-tune",
) -> tuple[ModelParams, list[dict[str, float]]]:
    """Fine-tunes `params.params` for `steps` steps of `loss_fn`, resumably and data-parallel.

    Args:
      loss_fn: `loss_fn(params, params0, batch) -> (loss, aux dict of scalars)`.
      params: the starting model (also `params0`, the frozen original, unless given).
      batch_fn: `batch_fn(step) -> dict of NumPy arrays`, the GLOBAL batch of `step`;
        deterministic in `step` so that a resumed run sees the same data. Every process
        calls it and feeds its own rows.
      tx: the optax optimiser.
      steps: total number of steps (a resumed run does the remaining ones).
      workdir: where `checkpoints/` lives; None trains without checkpoints.
      checkpoint_every: save every this many steps (and after the last).
      mesh: data-parallel mesh (default: every device of every process).
      params0: the frozen original (default: `params`).
      config: JSON-able description of the run (optimiser, fooling, data); a checkpoint
        whose config, module or param structure differs is refused.
      progress: show a tqdm bar with the latest aux values (on process 0).
      desc: the bar's label.

    Returns:
      (params, history): the fine-tuned model (host arrays) and one dict of aux values
      (floats, with "loss") per step, from step 0 (restored from the checkpoint on resume).

    Raises:
      ValueError: if the checkpoint in `workdir` belongs to a different run.
    """
    from tqdm.auto import tqdm

    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    mesh = make_mesh() if mesh is None else mesh
    params0 = replicate(params if params0 is None else params0, mesh)
    params = replicate(params, mesh)
    opt_state = replicate(tx.init(to_host(params.params)), mesh)
    sig = signature(params, opt_state, config)
    history: list[dict[str, float]] = []
    start = 0
    mngr = checkpoint_manager(workdir) if workdir is not None else None
    if mngr is not None and mngr.latest_step() is not None:
        start = mngr.latest_step()
        params, opt_state, history = _restore(mngr, start, params, opt_state, sig)
        history = list(history)[:start]
    step_fn = make_step(loss_fn, tx, mesh=mesh)
    bar = tqdm(
        total=steps,
        initial=start,
        desc=desc,
        disable=not progress or jax.process_index() != 0,
        dynamic_ncols=True,
    )
    pending = None  # aux of the previous step, read after the next one is dispatched

    def record(aux):
        values = {k: float(np.asarray(v.addressable_data(0))) for k, v in aux.items()}
        history.append(values)
        bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        bar.update(1)

    try:
        for step in range(start, steps):
            batch = shard_batch(batch_fn(step), mesh)
            params, opt_state, aux = step_fn(params, opt_state, params0, batch)
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
    local = jax.tree.map(jnp.asarray, to_host({"params": params.params, "state": params.state}))
    return params.replace(**local), history
