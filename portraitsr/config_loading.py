"""Typed configuration from YAML, one way for every package: dataclasses filled from mappings.

A YAML file mirrors a dataclass. Keys it leaves out keep their defaults; unknown keys are an error
(a typo must not silently fall back to a default); values are brought to the declared types (YAML
reads ``2e-4`` as a string and gives lists where tuples are meant); nested dataclasses, and lists
and dicts of them, are filled the same way. ``model/config.py``, ``training/config.py`` and
``training/data/prepare_config.py`` build their dataclasses with :func:`from_mapping`;
``training/data/framing.py`` and the service's settings (pydantic, for the environment variables)
check their YAML keys with :func:`check_keys`. Standard library and PyYAML only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping (an empty file is an empty mapping)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def check_keys(raw: dict[str, Any], known: Iterable[str], where: str) -> None:
    """ValueError naming the keys of ``raw`` that are not ``known``."""
    unknown = set(raw) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")


def from_mapping(cls: type[T], raw: Any, where: str = "") -> T:
    """An instance of the dataclass ``cls`` from a mapping, its values coerced to the declared types.

    ``where`` is the dotted path of ``raw`` in the whole configuration (``schedule.``), for messages.
    """
    place = where.rstrip(".:") or cls.__name__
    if not isinstance(raw, dict):
        raise ValueError(f"{place}: expected a mapping, got {raw!r}")
    check_keys(raw, (f.name for f in dataclasses.fields(cls)), place)
    hints = typing.get_type_hints(cls)
    return cls(**{name: _coerce(hints[name], value, f"{where}{name}") for name, value in raw.items()})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, f"{where}.")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _coerce(inner[0], value, where)
    if hint in (float, int, bool, str):
        return _scalar(hint, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args
        return {_coerce(key_type, k, where): _coerce(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple) and not isinstance(value, list | tuple):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    if origin is list:
        return [_coerce(args[0], item, f"{where}[{index}]") for index, item in enumerate(value)]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], item, where) for item in value)
        return tuple(_coerce(arg, item, where) for arg, item in zip(args, value, strict=True))
    return value


def _scalar(hint: type, value: Any, where: str) -> Any:
    if hint is float:
        return float(value)
    if hint is int:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return int(float(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    return str(value)
