"""Saving and loading `ModelParams` as orbax checkpoints.

A checkpoint directory holds the arrays (orbax `StandardCheckpointer`) and a
`jaxsal.json` with the architecture, so `jaxsal.load(path)` rebuilds the
model in one call.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxsal.models.registry import arch_of, build_module
from jaxsal.params import ModelParams

META = "jaxsal.json"


def save(path: str | Path, params: ModelParams, *, overwrite: bool = False) -> Path:
    """Writes `params` to the directory `path` as an orbax checkpoint plus `jaxsal.json`.

    Args:
      path: the checkpoint directory; it must not exist unless `overwrite`.
      params: the model to save.
      overwrite: replace an existing jaxsal checkpoint (or empty directory) at
        `path`. Anything else that exists there is never replaced.

    Returns:
      The absolute path written.

    Raises:
      FileExistsError: if `path` exists (and `overwrite` is False, or it is not
        a jaxsal checkpoint).
    """
    path = Path(path).absolute()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose a new path")
    empty_dir = path.is_dir() and not any(path.iterdir())
    if path.exists() and not (path / META).is_file() and not empty_dir:
        raise FileExistsError(
            f"{path} exists and is not a jaxsal checkpoint (no {META}); refusing to replace it. "
            "Remove it yourself or choose a new path"
        )
    arrays = {"params": params.params, "state": params.state}
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path / "arrays", arrays, force=overwrite)
    meta = {
        "arch": arch_of(params.module),
        "num_classes": params.num_classes,
        "beta": None if params.beta is None else float(params.beta),
        "dtype": str(jax.tree.leaves(params.params)[0].dtype),
    }
    (path / META).write_text(json.dumps(meta, indent=2))
    return path


def load(path: str | Path) -> ModelParams:
    """Loads a checkpoint written by `jaxsal.save` or `python -m weights_convert`.

    Args:
      path: the checkpoint directory.

    Returns:
      The `ModelParams` (arrays as NumPy arrays, in the dtype they were saved in).
    """
    path = Path(path).absolute()
    meta_file = path / META
    if not meta_file.exists():
        raise FileNotFoundError(
            f"{path} is not a jaxsal checkpoint (no {META}); write one with jaxsal.save "
            "or python -m weights_convert ARCH IN.pth OUT"
        )
    meta = json.loads(meta_file.read_text())
    module = build_module(meta["arch"], num_classes=meta["num_classes"])
    with ocp.StandardCheckpointer() as ckpt:
        arrays = ckpt.restore(path / "arrays")
    arrays = jax.tree.map(lambda a: np.asarray(a), arrays)
    params = ModelParams(module=module, params=arrays["params"], state=arrays.get("state", {}))
    return params.with_beta(meta["beta"])
