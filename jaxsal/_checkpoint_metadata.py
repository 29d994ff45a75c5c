"""A checkpoint's metadata, `jaxsal.json`: built and encoded on save, read and checked on load.

Its fields are described in `jaxsal.checkpoint`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import jax

from jaxsal._checkpoint_arrays import (
    _abstract_variables,
    _host_arrays,
    _listing,
    _mismatches,
    _template,
)
from jaxsal._checkpoint_format import FORMAT, META, VERSION, CheckpointError
from jaxsal.models.describe import (
    Invalid,
    arch_name,
    build,
    describe,
    is_registered,
    qualname,
    registered_classes,
    short,
    spec_from,
    spec_json,
)
from jaxsal.params import ModelParams


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
