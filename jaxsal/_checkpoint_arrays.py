"""A checkpoint's arrays: the manifest, the storage tree, and the dtype and shape checks.

`save` flattens a model's arrays into an orbax tree and a manifest
(`{name: {"shape", "dtype", "crc32"}}`, names like "params/fc/kernel");
`load` reads them back from `arrays/` and checks them against the manifest and
against the module or template they are restored into.
"""

from __future__ import annotations

import functools
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsal._checkpoint_format import ARRAYS, META, CheckpointError
from jaxsal.models.describe import Invalid, short
from jaxsal.params import ModelParams, ModelSpec

_SHOWN = 8  # mismatches listed in one error


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
