"""Configuration files of the fooling study, loaded as `path/to/file.py:argument`.

Each file defines `get_config(arg: str | None) -> experiments.fooling_study.StudyConfig`
(flax-examples style, with dataclasses instead of ml_collections):

- `experiments/configs/embedded.py[:default|quick|tiny]`: the embedded digit-scene study.
- `experiments/configs/imagenet.py:ARCH,KIND,METHOD`: one ImageNet fooling of the paper.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


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
            f"config file {path!r} not found; use e.g. experiments/configs/embedded.py:default"
        )
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path!r} defines no get_config(arg)")
    return module.get_config(arg or None)
