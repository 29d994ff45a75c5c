"""Data parallelism: one mesh axis, replicated state, batches sharded on their leading axis.

One `Mesh` over every device of every process, axis "data". Batch arrays are
sharded on their leading axis; parameters, optimiser state and the frozen
arrays of a loss are replicated, so XLA inserts the all-reduce of the
gradients. Each process feeds only its rows of the global batch
(`jax.make_array_from_process_local_data`), so the same code runs on one CPU,
one GPU, 8 fake CPU devices or a multi-host pod (`jax.distributed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


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
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.device_put(a, sharding)
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

    Raises:
      ValueError: an array has no leading axis divisible by the number of devices.
    """
    sharding = NamedSharding(mesh, P(AXIS))
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % mesh.size:
            raise ValueError(
                f'batch["{name}"] has shape {value.shape}; every batch array needs a leading '
                f"batch axis divisible by the {mesh.size} devices of the mesh (choose a batch "
                f"size that is a multiple of {mesh.size}, or a mesh of fewer devices)"
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


def mesh_for(batch_sizes, devices=None) -> Mesh:
    """Every device when all of `batch_sizes` split evenly over them, else a mesh of one."""
    devices = jax.devices() if devices is None else list(devices)
    even = all(int(b) % len(devices) == 0 for b in batch_sizes)
    return make_mesh(devices if even else devices[:1])
