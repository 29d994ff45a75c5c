"""Per-scene arrays of a finished piece of work, kept in an .npz, reused while its key matches."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import as_json, write_json


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


def stored(path: str | Path, key: Any, compute: Callable[[], dict]) -> dict:
    """`compute()` (a nested dict of arrays) kept in `path` (.npz) with `key` beside it (.json).

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
