"""Config files (`FILE.py:ARG` with `get_config(arg)`), config records, common options.

Every study's configuration is a frozen dataclass; a config file defines
`get_config(arg: str | None)` returning one (flax-examples style, with
dataclasses instead of ml_collections). `record(config)` is its JSON form,
written beside every result.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

from experiments.common.workdir import as_json, use_compile_cache


def load_config(spec: str):
    """The config of `spec` = "FILE.py" or "FILE.py:ARG" (`get_config(ARG)` of that file).

    Raises:
      FileNotFoundError: the file does not exist.
      AttributeError: the file has no `get_config`.
    """
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(
            f"config file {path!r} not found; use e.g. experiments/fooling/configs/embedded.py"
        )
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path!r} defines no get_config(arg)")
    return module.get_config(arg or None)


def record(config: Any) -> Any:
    """The JSON record of a config (dataclasses, tuples and arrays as JSON values)."""
    return as_json(config)


def add_common_arguments(parser: argparse.ArgumentParser, *, workdir: str) -> None:
    """--workdir, --models, --quick, --seeds, --no-progress, --no-compile-cache."""
    parser.add_argument("--workdir", default=workdir, help="work directory (resumed)")
    parser.add_argument("--models", default=None,
                        help="cache of the embedded base models, shareable between studies "
                        "(default WORKDIR/models)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds (the config's default when omitted)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled XLA programs in WORKDIR/jax_cache")  # fmt: skip


def with_seeds(config: Any, seeds: int | None) -> Any:
    """`config` with `seeds` seeds (unchanged for None); SystemExit below 1."""
    if seeds is None:
        return config
    if seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, got {seeds}")
    return dataclasses.replace(config, seeds=seeds)


def setup(args: argparse.Namespace, default: str | None = None) -> Any:
    """The study config a command line asks for, with the work directory's compile cache on.

    The config is `--config FILE.py[:ARG]` (`default` for a parser without --config), with
    ARG = quick under --quick when the spec names none, then `--seeds`. Unless
    --no-compile-cache, compiled XLA programs are kept in WORKDIR/jax_cache.
    """
    spec = getattr(args, "config", None) or default
    if spec is None:
        raise ValueError("no config: the parser has no --config and no default was given")
    if args.quick and ":" not in spec:
        spec += ":quick"
    if not args.no_compile_cache:
        use_compile_cache(Path(args.workdir) / "jax_cache")
    return with_seeds(load_config(spec), args.seeds)
