"""Work directories: resumable, never overwritten, JSON and arrays written atomically."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import numpy as np

# Dataclass field metadata: leave the field out of `as_json` while it holds its default.
OMIT_AT_DEFAULT = MappingProxyType({"omit_at_default": True})


def as_json(obj: Any) -> Any:
    """Dataclasses, tuples and NumPy / JAX values as JSON-able Python values.

    A dataclass field declared with `metadata=OMIT_AT_DEFAULT` (one added after work
    directories were written) is left out while it holds its default, so the keys and
    records written before it still match.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_at_default") and getattr(obj, f.name) == f.default)}  # fmt: skip
    if isinstance(obj, Mapping):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_json(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return as_json(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return as_json(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, data: Any) -> Path:
    """Writes JSON atomically (a killed run never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(as_json(data), indent=1))
    tmp.replace(path)
    return path


def cached(path: str | Path, key: Any, compute: Callable[[], Any]) -> Any:
    """`compute()` stored in `path` under `key` (as JSON), reused while the key matches."""
    path, key = Path(path), as_json(key)
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["value"]
    value = as_json(compute())
    write_json(path, {"key": key, "value": value})
    return value


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """{"a": {"b": x}} -> {"a/b": x} (arrays and numbers as arrays)."""
    out = {}
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "/"))
        else:
            out[name] = np.asarray(v)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """The inverse of `flatten`."""
    out: dict = {}
    for name, v in flat.items():
        node = out
        *path, last = name.split("/")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return out


def cached_arrays(path: str | Path, key: Any, compute: Callable[[], dict]) -> dict:
    """`compute()` (a nested dict of arrays) kept in `path` (.npz) with `key` beside it (.json).

    Returns the nested dict (keys with "/" come back nested: `flatten` gives them flat).

    A piece whose key differs (another configuration or model) is computed again
    and written under a new name, never over the old one; a half-written piece
    (killed run) has no key file and is recomputed.
    """
    path = Path(path)
    key = as_json(key)
    for k in range(1000):
        p = path if k == 0 else path.with_name(f"{path.stem}-{k}{path.suffix}")
        meta = p.with_suffix(".json")
        if not p.exists() or not meta.exists():
            break
        if json.loads(meta.read_text()) == key:
            with np.load(p) as f:
                return unflatten(dict(f))
    values = compute()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.stem + ".tmp.npz")
    np.savez(tmp, **flatten(values))
    tmp.replace(p)
    write_json(meta, key)
    return values


def start_study(workdir: str | Path, seeds: int) -> tuple[Path, Callable[[], dict]]:
    """Creates `workdir`, checks the number of seeds and starts the study's clocks.

    Returns:
      The work directory and `elapsed()`: {"wall_seconds", "cpu_seconds", "devices"} since
      this call, for the results JSON.

    Raises:
      ValueError: `seeds` below 1.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    t0, c0 = time.perf_counter(), time.process_time()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def elapsed() -> dict:
        return {"wall_seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0, "devices": str(jax.devices())}  # fmt: skip

    return workdir, elapsed


def output_names(
    workdir: str | Path, names: Sequence[str], *, now: float | None = None
) -> tuple[Path, ...]:
    """Paths for a run's outputs: the plain names when all are free, else time-stamped ones.

    Args:
      workdir: the work directory.
      names: file or directory names, e.g. ("results.json", "report.md", "figures").
      now: the time stamp's time (default: now).

    Returns:
      One path per name; none of them exists, so nothing earlier is overwritten.
    """
    workdir = Path(workdir)
    plain = tuple(workdir / n for n in names)
    if not any(p.exists() for p in plain):
        return plain
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    for k in range(1000):
        suffix = f"-{stamp}" + (f"-{k}" if k else "")
        paths = tuple(workdir / _stamped(n, suffix) for n in names)
        if not any(p.exists() for p in paths):
            return paths
    raise FileExistsError(f"no free output name in {workdir}; clean it up")


def _stamped(name: str, suffix: str) -> str:
    stem, dot, ext = name.partition(".")
    return f"{stem}{suffix}{dot}{ext}"


def use_compile_cache(path: str | Path) -> None:
    """Keeps compiled programs on disk, so a rerun skips most of XLA's compile time."""
    jax.config.update("jax_compilation_cache_dir", str(Path(path).absolute()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
