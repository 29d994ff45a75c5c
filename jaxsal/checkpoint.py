"""Saving and loading any `ModelParams` in one self-verifying format.

A checkpoint is a directory::

    PATH/
      jaxsal.json   the metadata (below); written last, so its presence marks a complete save
      arrays/       an orbax `StandardCheckpointer` checkpoint of {"params": ..., "state": ...}
                    as nested dicts of NumPy arrays (absent when the model has no arrays)

`jaxsal.json` (`"format": "jaxsal.checkpoint"`, `"version": 2`) holds:

- "model": how to rebuild the module. `{"arch": name, "num_classes": n}` for
  jaxsal's architectures (`jaxsal.models.ARCHITECTURES`); `{"class": name,
  "fields": {...}}` for a Linen class registered with `register_model`
  (jaxsal's own model classes and `TransferNet` are); null for a user's model
  from `jaxsal.wrap`, whose code cannot be saved: load it with `like=`.
- "model_type": the Python class or function, a hint for error messages only
  (no code is ever imported from a checkpoint).
- "spec": every `ModelSpec` field (kind, num_classes, in_channels, aliases,
  conv, arch, has_params, input_size, call_kwargs).
- "beta": null or the beta of beta-smoothing, a float.
- "dtype": the one floating dtype of all arrays.
- "arrays": the manifest, `{name: {"shape", "dtype", "crc32"}}`, one entry per
  array, named by its path ("params/fc/kernel", "state/batch_stats/bn1/mean").
- "jaxsal_version": the version that wrote it (informative).

Field values are JSON; what JSON lacks is a tagged object: `{"tuple": [...]}`,
`{"dict": {...}}`, `{"module": <a "model" description>}`, `{"type": registered
class name}`. Version 1 (the `arch` / `num_classes` / `beta` / `dtype` file of
earlier jaxsal) is still read.

`save` validates everything before writing anything (the model can be described
and rebuilt equal, the arrays fit the rebuilt module and are of one floating
dtype, the path may be written), writes into a hidden sibling directory and
renames it into place. `load` checks the metadata, the format version, that the
arrays read back and match the manifest (names, shapes, dtypes, checksums), and
that they fit the rebuilt architecture (`jax.eval_shape` of its `init`) or the
template `like`. Every failure is a `CheckpointError` naming the path, the
problem and the fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import flax.linen as nn
import jax

from jaxsal._checkpoint_arrays import (
    _abstract_variables,
    _check_dtype,
    _check_fit,
    _check_x64,
    _read_arrays,
    _template,
)
from jaxsal._checkpoint_format import (  # FORMAT, VERSION: re-exported, as before the split
    ARRAYS,
    FORMAT,  # noqa: F401
    META,
    VERSION,  # noqa: F401
    CheckpointError,
)
from jaxsal._checkpoint_metadata import _metadata, _read_meta
from jaxsal.models.describe import Invalid, build, register_model, spec_from
from jaxsal.params import ModelParams, ModelSpec, spec_of_module

# ---------------------------------------------------------------- save


def save(path: str | Path, params: ModelParams, *, overwrite: bool = False) -> Path:
    """Writes `params` to the directory `path` (arrays plus a self-describing `jaxsal.json`).

    Everything is checked before anything is written; the checkpoint is written
    into a hidden sibling directory and renamed into place, so a failure leaves
    nothing behind and `path` is either absent, the old checkpoint or the new one.
    Call it from one process (the arrays are gathered to the host).

    Args:
      path: the checkpoint directory; it must not exist unless `overwrite`.
      params: the model: a jaxsal architecture, a registered Linen class
        (`register_model`), or any model from `jaxsal.wrap` (only its arrays
        and spec are saved; `load` it with `like=`).
      overwrite: replace an existing jaxsal checkpoint (or empty directory) at
        `path`. Anything else that exists there is never replaced.

    Returns:
      The absolute path written.

    Raises:
      FileExistsError: `path` exists (and `overwrite` is False, or it is not a
        jaxsal checkpoint).
      CheckpointError: the model cannot be described or its arrays are not of
        one floating dtype, or `path` cannot be written.
    """
    path = Path(path).absolute()
    _check_target(path, overwrite)
    try:
        text, storage = _metadata(params)
    except Invalid as e:
        raise CheckpointError(f"cannot save {path}: {e}. Nothing was written") from None
    _write(path, text, storage)
    return path


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True or choose a new path")
        if not (path.is_dir() and ((path / META).is_file() or not any(path.iterdir()))):
            raise FileExistsError(
                f"{path} exists and is not a jaxsal checkpoint (no {META}); refusing to replace "
                "it. Remove it yourself or choose a new path"
            )
    ancestor = next(p for p in path.parents if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise CheckpointError(
            f"cannot save {path}: {ancestor} is not a writable directory; choose another path"
        )


def _write(path: Path, meta_text: str, storage: dict) -> None:
    """Writes into a hidden sibling and renames it to `path` (replacing a checked checkpoint)."""
    import orbax.checkpoint as ocp

    parent = path.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # deepest first
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp, old = parent / f".{path.name}.jaxsal-tmp-{token}", None
    try:
        tmp.mkdir(parents=True)
        if storage:
            with ocp.StandardCheckpointer() as ckpt:
                ckpt.save(tmp / ARRAYS, storage)
        with open(tmp / META, "w") as f:
            f.write(meta_text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = parent / f".{path.name}.jaxsal-old-{token}"
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old is not None:
                old.rename(path)
                old = None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    if old is not None and old.is_symlink():
        old.unlink()  # `path` was a link to a checkpoint: the link is replaced, not its target
    elif old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- load


def load(path: str | Path, *, like: ModelParams | None = None, dtype=None) -> ModelParams:
    """Loads a checkpoint written by `jaxsal.save` or `python -m weights_convert`.

    Args:
      path: the checkpoint directory.
      like: a template `ModelParams` of the same structure (e.g.
        `jaxsal.wrap(MyNet(), variables, input_shape=(H, W, C))`; its arrays may
        be abstract): the arrays are restored into it, after checking their
        names, shapes and dtypes. Needed for user models, whose code a
        checkpoint cannot hold; optional for any other.
      dtype: cast the (floating) arrays to this dtype; by default they keep
        the dtype they were saved in.

    Returns:
      The `ModelParams` (arrays as NumPy arrays), with the saved spec and beta.

    Raises:
      FileNotFoundError: `path` is not a checkpoint (no `jaxsal.json`).
      CheckpointError: the checkpoint is corrupt, of an unknown format version,
        does not fit its architecture or `like`, holds float64 arrays while
        64-bit JAX is off, or holds a user model and `like` is missing.
    """
    path = Path(path).absolute()
    meta = _read_meta(path)
    want = None if dtype is None else _check_dtype(dtype)
    _check_x64(path, meta["dtype"] if want is None else want.name, want is not None)
    try:
        saved_spec = None if meta["spec"] is None else spec_from(meta["spec"])
    except Invalid as e:
        raise CheckpointError(f"{path / META} is corrupt: {e}. Re-save the model") from None
    if like is not None:
        module, spec, need, treedef = _from_like(path, like, saved_spec, dtypes=want is None)
        what, fix = (
            "the template like",
            (
                "Pass a template built like the saved model (same class, constructor arguments "
                "and variables); dtype= casts on purpose"
            ),
        )
    else:
        module, spec = _rebuild(path, meta, saved_spec)
        try:
            need, treedef = _template(_abstract_variables(module, spec), dtypes=False)
        except Invalid as e:
            raise CheckpointError(f"{path}: {e}. {_like_hint(meta)}") from None
        what, fix = (
            f"the module that {META} describes",
            (
                f"{META} does not belong to these arrays (edited, or copied from another "
                "checkpoint): re-save the model with jaxsal.save"
            ),
        )
    manifest = meta["arrays"]
    if manifest is not None:
        _check_fit(path, {n: (tuple(m["shape"]), m["dtype"]) for n, m in manifest.items()},
                   need, what, fix)  # fmt: skip
    arrays = _read_arrays(path, manifest)
    if manifest is None:  # version 1: no manifest, check what was read
        _check_fit(path, {n: (a.shape, a.dtype.name) for n, a in arrays.items()}, need, what, fix)
    leaves = [arrays[n] if want is None else arrays[n].astype(want) for n in need]
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    out = ModelParams(module=module, params=tree["params"], state=tree["state"], spec=spec)
    return out.with_beta(meta["beta"])


def _like_hint(meta: dict) -> str:
    mt = meta.get("model_type") or "the model"
    return (
        f"Rebuild the model ({mt}) and pass it as the template: "
        "jaxsal.load(path, like=jaxsal.wrap(model, ..., input_shape=(H, W, C)))"
    )


def _rebuild(path: Path, meta: dict, spec: ModelSpec | None) -> tuple[nn.Module, ModelSpec]:
    """The module that the metadata describes, and its spec."""
    if meta["model"] is None:
        kind = spec.kind if spec is not None else "user"
        register = (
            "; or register its class with jaxsal.checkpoint.register_model before saving, so "
            "that load rebuilds it"
            if kind == "linen"
            else ""
        )
        raise CheckpointError(
            f"{path} holds a user's {kind} model ({meta.get('model_type')}): its code is not "
            f"in the checkpoint, only its arrays and spec. {_like_hint(meta)}{register}"
        )
    try:
        module = build(meta["model"], "the model")
    except Invalid as e:
        raise CheckpointError(
            f"{path}: cannot rebuild the model that {META} describes: {e}. If its class is "
            f"registered by your code ({meta.get('model_type')}), import that before loading; "
            "else the file was edited or the class changed since saving: re-save the model, or "
            "load it with like=<a ModelParams of the same structure>"
        ) from None
    spec = spec_of_module(module) if spec is None else spec
    off = [a for a in ("num_classes", "in_channels")
           if hasattr(module, a) and getattr(module, a) != getattr(spec, a)]  # fmt: skip
    if off:
        raise CheckpointError(
            f"{path / META} is inconsistent: its spec's {', '.join(off)} differ from the "
            "module's. The file was edited; re-save the model with jaxsal.save"
        )
    return module, spec


def _from_like(path: Path, like, saved: ModelSpec | None, *, dtypes: bool):
    """(module, spec, needed arrays, treedef) of the template `like`."""
    if not isinstance(like, ModelParams):
        raise TypeError(f"like must be a ModelParams (e.g. from jaxsal.wrap), got {type(like)}")
    keys = ("kind", "num_classes", "in_channels", "has_params")
    off = [] if saved is None else [k for k in keys if getattr(saved, k) != getattr(like.spec, k)]
    if off:
        diff = ", ".join(
            f"{k} {getattr(saved, k)!r} (like: {getattr(like.spec, k)!r})" for k in off
        )
        raise CheckpointError(
            f"{path} holds another kind of model than the template like: {diff}. Pass a "
            "template built like the saved model"
        )
    try:
        need, treedef = _template({"params": like.params, "state": like.state}, dtypes=dtypes)
    except Invalid as e:
        raise CheckpointError(f"cannot load {path} into like: {e}") from None
    return like.module, like.spec if saved is None else saved, need, treedef


__all__ = ["CheckpointError", "load", "register_model", "save"]
