"""A small validator that turns nested dicts (from YAML) into typed dataclasses.

Every field is checked against its annotation (a ``Literal`` lists the choices; ``min`` / ``max`` sit in the field's
metadata); an unknown key, a wrong type or an out-of-range value raises :class:`ConfigError`
naming the key path, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError, suggest


def field(
    default: Any = dataclasses.MISSING,
    *,
    min: float | None = None,
    max: float | None = None,
    open_min: bool = False,
    doc: str = "",
    **kwargs: Any,
) -> Any:
    """A dataclass field with range limits and a one-line description."""
    meta = {"min": min, "max": max, "open_min": open_min, "doc": doc}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kwargs)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        instance = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(instance), metadata=meta, **kwargs)
    return dataclasses.field(default=default, metadata=meta, **kwargs)


def describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is list:
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {describe(args[1])}" if args else "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, path: str) -> Any:
    """``value`` as type ``tp``, or ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:  # free-form (a plugin's arguments): any value, but never a NaN or an infinity
        _check_finite(value, path)
        return value
    if origin in (Union, types.UnionType):
        return _union(tp, value, path)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{path}: {value!r} is not allowed; {suggest(str(value), map(str, typing.get_args(tp)))}")
    if origin is list or tp is list:
        return _list(tp, value, path)
    if origin is dict or tp is dict:
        return _dict(tp, value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    return _scalar(tp, value, path)


def _check_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {value!r} is not allowed; expected a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def _union(tp: Any, value: Any, path: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    mapping = next((a for a in args if dataclasses.is_dataclass(a) or typing.get_origin(a) is dict), None)
    if isinstance(value, dict) and mapping is not None:
        return convert(mapping, value, path)  # keep the precise message of a bad key inside
    for arg in (a for a in args if a is not type(None)):
        try:
            return convert(arg, value, path)
        except ConfigError:
            continue
    raise _bad(path, value, describe(tp))


def _list(tp: Any, value: Any, path: str) -> list[Any]:
    args = typing.get_args(tp)
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise _bad(path, value, describe(tp))
    return [convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)] if args else value


def _dict(tp: Any, value: Any, path: str) -> dict[str, Any]:
    args = typing.get_args(tp)
    if not isinstance(value, dict):
        raise _bad(path, value, describe(tp))
    return {str(k): convert(args[1], v, f"{path}.{k}") for k, v in value.items()} if args else dict(value)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # NaN would pass every range check
            raise ConfigError(f"{path}: {value!r} is not allowed; expected a finite number")
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer() and abs(value) >= 1e3:
        return int(value)  # 1e9 in YAML is a float
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise _bad(path, value, describe(tp))


def _bad(path: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {value!r} ({type(value).__name__}) is not allowed; expected {allowed}")


def build(cls: type, data: Any, path: str = "") -> Any:
    """Instantiate dataclass ``cls`` from the mapping ``data``, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _bad(path or "config", data, "a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"unknown key {where!r}; {suggest(str(key), fields, limit=40)}")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        where = f"{path}.{name}" if path else name
        value = convert(hints[name], data[name], where)
        check_range(value, f.metadata, where)
        values[name] = value
    try:
        obj = cls(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    check = getattr(obj, "check", None)
    if check:
        check(path)
    return obj


def check_range(value: Any, meta: Any, path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high, open_min = meta.get("min"), meta.get("max"), meta.get("open_min")
    too_low = low is not None and (value < low or (open_min and value == low))
    if too_low or (high is not None and value > high):
        bounds = ([f"> {low}" if open_min else f">= {low}"] if low is not None else []) + (
            [f"<= {high}"] if high is not None else []
        )
        raise ConfigError(f"{path}: {value!r} is out of range; it must be {' and '.join(bounds)}")


def to_dict(obj: Any) -> Any:
    """Plain nested dicts, for writing the resolved config next to a run."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj
