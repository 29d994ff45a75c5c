"""Model descriptions: registered model classes, and Linen modules as JSON and back.

A checkpoint (`jaxsal.checkpoint`) must rebuild the module of the model it
holds without importing code by name. jaxsal's own architectures are
rebuilt from their name and number of classes; other Linen classes register
under a name (`register_model`, also a class decorator) and are rebuilt from
their dataclass fields, written as JSON recursively: ints, floats, strings,
bools, None, tuples, dicts, nested modules and classes by registered name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping

import flax.linen as nn
import numpy as np

from jaxsal.models.registry import ARCHITECTURES, build_module
from jaxsal.params import ModelSpec


class Invalid(Exception):
    """A problem found by a helper; the public function adds the path and the fix."""


def short(e: BaseException) -> str:
    """`e` in one short line (TensorStore appends its whole JSON spec to its messages)."""
    text = (str(e).strip().splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
    return f"{type(e).__name__}: {text[:240].rstrip('.')}"


# ---------------------------------------------------------------- registered classes

_CLASSES: dict[str, type] = {}
_NAMES: dict[type, str] = {}


def qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def register_model(cls=None, name: str | None = None):
    """Registers a Linen module class, so that `save` / `load` rebuild it from its fields.

    A registered module is saved as its name and its dataclass fields: ints,
    floats, strings, bools, None, tuples, lists, dicts, nested Linen modules (a
    jaxsal architecture or another registered class) and registered classes.
    Use it as a decorator (`@register_model`, `@register_model(name="my_net")`)
    or call it (`register_model(MyNet, "my_net")`). Loading needs the class
    registered in the loading process too (import the module that registers it).

    Args:
      cls: a `flax.linen.Module` subclass.
      name: the name written into checkpoints (default: the class's own
        `jaxsal_name`, else its `__name__`); not one of jaxsal's architecture
        names, nor another class's.

    Returns:
      `cls` unchanged (or, without `cls`, a decorator).

    Raises:
      TypeError: `cls` is not a Linen module class.
      ValueError: the name is an architecture's or another class's, or `cls` is
        registered under another name.
    """
    if cls is None or isinstance(cls, str):
        name = cls if isinstance(cls, str) else name
        return lambda c: register_model(c, name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_model takes a flax.linen.Module class, got {cls!r}")
    name = name or vars(cls).get("jaxsal_name") or cls.__name__
    if name in ARCHITECTURES:
        raise ValueError(f'"{name}" is a jaxsal architecture; register {cls.__name__} as name=...')
    old = _CLASSES.get(name)
    if old is not None and old is not cls and qualname(old) != qualname(cls):
        raise ValueError(
            f'model name "{name}" is taken by {qualname(old)}; register {qualname(cls)} '
            "under another name: register_model(cls, name=...)"
        )
    if _NAMES.get(cls, name) != name:
        raise ValueError(f'{qualname(cls)} is already registered as "{_NAMES[cls]}"')
    _NAMES.pop(old, None)  # a re-definition of the same class (module reload) replaces it
    _CLASSES[name], _NAMES[cls] = cls, name
    return cls


def _register_builtins() -> None:
    from jaxsal.models.resnet import BasicBlock, Bottleneck

    for cls in {getattr(c, "func", c) for c in ARCHITECTURES.values()} | {BasicBlock, Bottleneck}:
        register_model(cls, f"jaxsal.{cls.__name__}")


_register_builtins()


def is_registered(cls: type) -> bool:
    """Is `cls` a registered model class?"""
    registered_classes()
    return cls in _NAMES


def registered_classes() -> dict[str, type]:
    """The registry, with `TransferNet` (imported here, so that its module may import this)."""
    if "transfer_net" not in _CLASSES:
        from jaxsal.models.transfer import TransferNet

        if TransferNet not in _NAMES:
            register_model(TransferNet)
    return _CLASSES


# ---------------------------------------------------------------- describing modules


def arch_name(module: nn.Module) -> str | None:
    """The architecture name when `module` is exactly `build_module(name, num_classes=...)`."""
    for name, ctor in ARCHITECTURES.items():
        if type(module) is getattr(ctor, "func", ctor):
            with contextlib.suppress(Exception):
                if ctor(num_classes=module.num_classes) == module:
                    return name
    return None


def describe(module: nn.Module, where: str) -> dict:
    """The JSON description of an architecture or a registered class's module."""
    arch = arch_name(module)
    if arch is not None:
        return {"arch": arch, "num_classes": int(module.num_classes)}
    registered_classes()
    name = _NAMES.get(type(module))
    if name is None:
        raise Invalid(
            f"{where} is a {qualname(type(module))} module, whose class is not registered: "
            f"register it (jaxsal.checkpoint.register_model({type(module).__name__}))"
        )
    fields = {}
    for f in dataclasses.fields(module):
        if f.init and f.name != "parent" and not (f.name == "name" and module.name is None):
            fields[f.name] = _encode(getattr(module, f.name), f"{where}.{f.name}")
    return {"class": name, "fields": fields}


def _encode(value, where: str):
    if value is None or isinstance(value, bool | str | int | float):
        return value
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    if isinstance(value, nn.Module):
        return {"module": describe(value, where)}
    if isinstance(value, type) and value in _NAMES:
        return {"type": _NAMES[value]}
    if type(value) is tuple:
        return {"tuple": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if type(value) is list:
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise Invalid(
        f"{where} is {type(value).__name__} {str(value)[:60]!r}, which a checkpoint cannot "
        "describe (only ints, floats, strings, bools, None, tuples, lists, dicts with string "
        "keys, Linen modules and registered classes)"
    )


def _decode(value, where: str):
    if isinstance(value, list):
        return [_decode(v, where) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise Invalid(f"{where}: unknown value {value!r}")
    (tag, inner), classes = next(iter(value.items())), registered_classes()
    if tag == "tuple":
        return tuple(_decode(v, where) for v in inner)
    if tag == "dict":
        return {k: _decode(v, f"{where}[{k!r}]") for k, v in inner.items()}
    if tag == "module":
        return build(inner, where)
    if tag == "type" and inner in classes:
        return classes[inner]
    if tag == "type":
        raise Invalid(f'{where} refers to the class "{inner}", which is not registered')
    raise Invalid(f"{where}: unknown tag {tag!r}")


def build(desc, where: str) -> nn.Module:
    """The module of a description (`describe`'s inverse)."""
    try:
        if "arch" in desc:
            return build_module(desc["arch"], num_classes=desc["num_classes"])
        cls = registered_classes().get(desc["class"])
        if cls is None:
            raise Invalid(f'{where} is of class "{desc["class"]}", which is not registered')
        return cls(**{k: _decode(v, f"{where}.{k}") for k, v in desc["fields"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Invalid(f"rebuilding {where} from {desc!r:.200} failed: {short(e)}") from None


def spec_json(spec: ModelSpec) -> dict:
    fields = dataclasses.fields(spec)
    return {f.name: _encode(getattr(spec, f.name), f"spec.{f.name}") for f in fields}


def spec_from(d) -> ModelSpec:
    try:
        return ModelSpec(**{k: _decode(v, f"spec.{k}") for k, v in d.items()})
    except (TypeError, ValueError, AttributeError) as e:
        raise Invalid(f"its spec {d!r:.200} is not a ModelSpec: {short(e)}") from None
