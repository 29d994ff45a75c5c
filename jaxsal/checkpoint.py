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
import functools
import json
import os
import shutil
import sys
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsal.models.describe import (
    Invalid,
    arch_name,
    build,
    describe,
    is_registered,
    qualname,
    register_model,
    registered_classes,
    short,
    spec_from,
    spec_json,
)
from jaxsal.params import ModelParams, ModelSpec, spec_of_module

META = "jaxsal.json"
ARRAYS = "arrays"
FORMAT = "jaxsal.checkpoint"
VERSION = 2
_SHOWN = 8  # mismatches listed in one error


class CheckpointError(ValueError):
    """A model that cannot be saved, or a checkpoint that does not load as it was saved."""


# ---------------------------------------------------------------- arrays


def _part(key) -> str:
    """One step of a pytree path: a dict key, an attribute name or a sequence index."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _flat(tree) -> tuple[list[tuple[str, tuple[str, ...], Any]], Any]:
    """[(name, path parts, leaf)] and the treedef; a name joins the parts with "/"."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)
    parts = [tuple(map(_part, kp)) for kp, _ in pairs]
    return [("/".join(p), p, leaf) for p, (_, leaf) in zip(parts, pairs)], treedef


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _host_arrays(params: ModelParams) -> tuple[dict, dict, str | None]:
    """(orbax tree, manifest, dtype) of the arrays, checked: arrays of one floating dtype."""
    storage, manifest, seen, by_dtype = {}, {}, set(), {}
    for name, parts, leaf in _flat({"params": params.params, "state": params.state})[0]:
        if isinstance(leaf, jax.core.Tracer):
            raise Invalid(f"{name} is a traced value; call save outside jax.jit / jax.grad")
        if not isinstance(leaf, np.ndarray | np.generic | jax.Array):
            raise Invalid(f"{name} is a {type(leaf).__name__}, not an array (jnp.asarray it)")
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise Invalid(f"{name} has dtype {leaf.dtype}; a checkpoint holds floating arrays")
        dotted = ".".join(parts)  # orbax's name for it
        if any(not p or "/" in p for p in parts) or name in manifest or dotted in seen:
            raise Invalid(f"the array path {parts} is empty, holds '/', or names two arrays")
        seen.add(dotted)
        a = np.asarray(leaf)
        by_dtype.setdefault(a.dtype.name, name)
        manifest[name] = {"shape": list(a.shape), "dtype": a.dtype.name, "crc32": _crc(a)}
        node = storage
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = a
    if len(by_dtype) > 1:
        mixed = ", ".join(f"{d} ({n}, ...)" for d, n in by_dtype.items())
        raise Invalid(
            f"the arrays mix dtypes {mixed}; cast them to one, e.g. params.astype(jnp.float32)"
        )
    return storage, manifest, next(iter(by_dtype), None)


def _template(tree, *, dtypes: bool) -> tuple[dict[str, tuple], Any]:
    """{name: (shape, dtype name or None)} of a (possibly abstract) tree, and its treedef."""
    need, (flat, treedef) = {}, _flat(tree)
    for name, _, leaf in flat:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise Invalid(f"{name} of the template is a {type(leaf).__name__}, not an array")
        need[name] = (tuple(leaf.shape), np.dtype(leaf.dtype).name if dtypes else None)
    return need, treedef


def _abstract_variables(module: nn.Module, spec: ModelSpec) -> dict:
    """{"params", "state"} of `module.init`, as shapes (`jax.eval_shape`: nothing computed)."""
    shape = (1, *(spec.input_size or (64, 64)), spec.in_channels)
    init = functools.partial(module.init, **dict(spec.call_kwargs))
    x = jax.ShapeDtypeStruct(shape, jnp.result_type(float))  # the initialisers' default float
    try:
        v = dict(jax.eval_shape(init, jax.random.key(0), x))
    except Exception as e:  # noqa: BLE001 - any failure of user code, reported with its cause
        raise Invalid(
            f"initialising the rebuilt {type(module).__name__} on an input of shape {shape} "
            f"failed: {short(e)}"
        ) from None
    return {"params": v.pop("params", {}), "state": v}


def _mismatches(found: dict, need: dict, what: str) -> list[str]:
    """Lines naming each difference between the checkpoint's arrays and `need`."""
    lines = []
    for name, (shape, dtype) in need.items():
        if name not in found:
            lines.append(f"missing (in {what}, not in the checkpoint): {name} {shape}")
        elif found[name][0] != shape:
            lines.append(
                f"wrong shape: {name} is {found[name][0]} in the checkpoint, {what} needs {shape}"
            )
        elif dtype is not None and found[name][1] != dtype:
            lines.append(
                f"wrong dtype: {name} is {found[name][1]} in the checkpoint, {what} has {dtype}"
            )
    unexpected = [n for n in found if n not in need]
    lines += [
        f"unexpected (in the checkpoint, not in {what}): {n} {found[n][0]}" for n in unexpected
    ]
    return lines


def _listing(lines: list[str]) -> str:
    more = f"\n  ... and {len(lines) - _SHOWN} more" if len(lines) > _SHOWN else ""
    plural = "s" if len(lines) != 1 else ""
    return f"({len(lines)} problem{plural}):\n  " + "\n  ".join(lines[:_SHOWN]) + more + "\n"


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


def _metadata(params: ModelParams) -> tuple[str, dict]:
    """The metadata text and the orbax tree of `params`, verified to rebuild what was given."""
    if not isinstance(params, ModelParams):
        raise Invalid(f"save takes a ModelParams (jaxsal.init / wrap / load), got {type(params)}")
    storage, manifest, dtype = _host_arrays(params)
    spec, module = params.spec, params.module
    beta = params.beta
    if isinstance(beta, jax.core.Tracer):
        raise Invalid("beta is a traced value; call save outside jax.jit / jax.grad")
    registered_classes()
    model = None  # a user's model: arrays and spec only
    if spec.kind == "linen" and (arch_name(module) is not None or is_registered(type(module))):
        model = describe(module, type(module).__name__)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "model_type": _model_type(params),
        "spec": spec_json(spec),
        "beta": None if beta is None else float(beta),
        "dtype": dtype,
        "arrays": manifest,
        "jaxsal_version": _jaxsal_version(),
    }
    try:  # check what load will read: the JSON text, not the dict
        text = _dumps(meta)
        back = json.loads(text)
    except (TypeError, ValueError) as e:
        raise Invalid(f"its metadata is not JSON: {short(e)}") from None
    if spec_from(back["spec"]) != spec:
        raise Invalid(f"its spec does not survive JSON: {spec}")
    if model is not None:
        rebuilt = build(back["model"], type(module).__name__)
        if rebuilt != module:
            raise Invalid(
                f"rebuilding its module from {model!r:.200} gives {rebuilt!r:.200}, not an equal "
                "module; load it with like= instead, or give the class plain fields"
            )
        need, _ = _template(_abstract_variables(rebuilt, spec), dtypes=False)
        found = {n: (tuple(m["shape"]), m["dtype"]) for n, m in manifest.items()}
        lines = _mismatches(found, need, "the module")
        if lines:
            raise Invalid(f"its arrays do not fit its module {_listing(lines)}")
    return text, storage


def _dumps(meta: dict) -> str:
    """`meta` as JSON text, one line per spec field and per array."""

    def block(d: dict) -> str:
        return (
            "{\n"
            + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in d.items())
            + "\n  }"
        )

    items = [f"  {json.dumps(k)}: {block(v) if k in ('spec', 'arrays') and v else json.dumps(v)}"
             for k, v in meta.items()]  # fmt: skip
    return "{\n" + ",\n".join(items) + "\n}\n"


def _model_type(params: ModelParams) -> str:
    module = params.module
    if params.spec.kind == "nnx":
        node = (getattr(module, "nodes", None) or [None])[0]
        t = getattr(node, "type", None)
        return f"NNX {qualname(t) if isinstance(t, type) else t or 'module'}"
    return qualname(module if params.spec.kind == "function" else type(module))


def _jaxsal_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version("jaxsal")
    return None


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


def _read_meta(path: Path) -> dict:
    meta_file = path / META
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"{path} is not a jaxsal checkpoint (no {META}); write one with jaxsal.save "
            "or python -m weights_convert ARCH IN.pth OUT"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{meta_file} is not valid JSON ({e}): the file is corrupt (truncated or edited). "
            "Re-save the model with jaxsal.save (or python -m weights_convert)"
        ) from None
    if isinstance(meta, dict) and "version" not in meta and {"arch", "num_classes"} <= set(meta):
        meta = {"version": 1, "model": {"arch": meta["arch"], "num_classes": meta["num_classes"]},
                "spec": None, "beta": meta.get("beta"), "dtype": meta.get("dtype"),
                "arrays": None}  # fmt: skip
    if not isinstance(meta, dict) or "version" not in meta or meta.get("format", FORMAT) != FORMAT:
        raise CheckpointError(
            f"{meta_file} is not jaxsal checkpoint metadata (no format version): the file is "
            "corrupt or not jaxsal's. Re-save the model with jaxsal.save"
        )
    if meta["version"] not in (1, VERSION):
        raise CheckpointError(
            f"{meta_file} has format version {meta['version']!r}; this jaxsal reads versions 1 "
            f"to {VERSION}. Load it with the jaxsal that wrote it (or a newer one) and re-save"
        )
    checks = {
        "model": lambda v: v is None or isinstance(v, dict),
        "spec": lambda v: v is None or isinstance(v, dict),
        "beta": lambda v: v is None or isinstance(v, int | float) and not isinstance(v, bool),
        "dtype": lambda v: v is None or isinstance(v, str),
        "arrays": lambda v: v is None or isinstance(v, dict) and all(map(_entry_ok, v.values())),
    }
    bad = [k for k, ok in checks.items() if k not in meta or not ok(meta[k])]
    if bad:
        raise CheckpointError(
            f"{meta_file} lacks or garbles the fields {', '.join(bad)}: the file is corrupt or "
            "was edited. Re-save the model with jaxsal.save"
        )
    return meta


def _entry_ok(entry) -> bool:
    """A manifest entry: {"shape": [ints], "dtype": str, "crc32": int}."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("shape"), list)
        and all(isinstance(d, int) for d in entry["shape"])
        and isinstance(entry.get("dtype"), str)
        and isinstance(entry.get("crc32"), int)
    )


def _check_dtype(dtype) -> np.dtype:
    want = jnp.dtype(dtype)
    if not jnp.issubdtype(want, jnp.floating):
        raise CheckpointError(f"dtype must be a floating dtype (jnp.float32, ...), got {want}")
    return want


def _check_x64(path: Path, dtype_name: str | None, asked: bool) -> None:
    if dtype_name != "float64" or jax.dtypes.canonicalize_dtype(np.float64) == np.float64:
        return
    if asked:
        raise CheckpointError(
            f"loading {path} with dtype=float64 needs 64-bit JAX: call "
            'jax.config.update("jax_enable_x64", True) first, or pass dtype=jnp.float32'
        )
    raise CheckpointError(
        f"{path} holds float64 arrays, but 64-bit JAX is off, so they would silently become "
        'float32. Turn it on first (jax.config.update("jax_enable_x64", True)), or cast on '
        "purpose: jaxsal.load(path, dtype=jnp.float32)"
    )


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


def _check_fit(path: Path, found: dict, need: dict, what: str, fix: str) -> None:
    lines = _mismatches(found, need, what)
    if lines:
        raise CheckpointError(f"{path}: the arrays do not fit {what} {_listing(lines)}{fix}")


def _settle_failed_reads(seconds: float = 0.2) -> None:
    """Waits out TensorStore reads still in flight after a failed orbax restore, silently.

    They complete into orbax's event loop, already closed, and each would print
    a "RuntimeError: Event loop is closed" traceback from a background thread.
    """
    previous = sys.unraisablehook

    def hook(info):
        if not (
            isinstance(info.exc_value, RuntimeError) and "loop is closed" in str(info.exc_value)
        ):
            previous(info)

    sys.unraisablehook = hook
    try:
        time.sleep(seconds)
    finally:
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous


def _read_arrays(path: Path, manifest: dict | None) -> dict[str, np.ndarray]:
    """{name: array} from arrays/, checked against the manifest (names, shapes, dtypes, CRCs)."""
    import orbax.checkpoint as ocp

    if manifest == {}:
        return {}
    directory = path / ARRAYS
    fix = "They are truncated, missing or corrupt: re-save the model (or copy the checkpoint again)"
    if not directory.is_dir():
        raise CheckpointError(f"{path}: the array directory {directory} is missing. {fix}")
    try:
        with ocp.StandardCheckpointer() as ckpt:
            tree = ckpt.restore(directory)
    except Exception as e:  # noqa: BLE001 - orbax / TensorStore raise many types
        _settle_failed_reads()
        raise CheckpointError(
            f"{path}: the array files under {directory} cannot be read ({short(e)}). {fix}"
        ) from None
    arrays = {name: np.asarray(leaf) for name, _, leaf in _flat(tree)[0]}
    if manifest is None:
        return arrays
    found = {n: (a.shape, a.dtype.name) for n, a in arrays.items()}
    need = {n: (tuple(m["shape"]), m["dtype"]) for n, m in manifest.items()}
    lines = _mismatches(found, need, "the manifest")
    lines += [f"wrong contents: {n} differs from what was saved (CRC-32 mismatch)"
              for n, m in manifest.items()
              if n in arrays and found[n] == need[n] and _crc(arrays[n]) != m["crc32"]]  # fmt: skip
    if lines:
        raise CheckpointError(
            f"{path}: the arrays under {directory} do not match the manifest in {META} "
            f"{_listing(lines)}{fix}"
        )
    return arrays


__all__ = ["CheckpointError", "load", "register_model", "save"]
