"""Where a config's data comes from: a YAML file or a dict, dotted settings over it, and the
shorthands it may use."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


def read_source(source: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml_value(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (a binary file?)") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty; `prunekit demo --config-only` prints a complete one")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, not {type(data).__name__}")
    return data


def yaml_value(text: str, what: str) -> Any:
    """The YAML value of ``text`` — a tree: nothing nested beyond Python's limits, no alias that
    contains itself, no number too long to read — or a ConfigError naming ``what``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{what}: not valid YAML (nested too deeply)") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ConfigError(f"{what}: not a value prunekit reads ({str(exc).split(';')[0]})") from None
    _check_tree(value, what)
    return value


def _check_tree(value: Any, what: str) -> None:
    """Refuse a value that contains itself (``&a [*a]``): every reader of it would never end. A
    depth-first walk that visits each node once, however many aliases share it."""
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            done.add(id(node))
            continue
        if not isinstance(node, (dict, list)) or id(node) in done:
            continue
        if id(node) in on_path:
            raise ConfigError(f"{what}: a YAML alias refers to a value that contains it; write the value out")
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in (node.values() if isinstance(node, dict) else node))


def with_settings(data: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with each dotted key of ``settings`` set (sections made where missing; a section
    given as a word, such as ``retrain: none``, replaced)."""
    out = copy.deepcopy(data)
    for path, value in settings.items():
        node = out
        *sections, key = path.split(".")
        for section in sections:
            if not isinstance(node.get(section), dict):
                node[section] = {}
            node = node[section]
        node[key] = value
    return out


def shorthand(data: dict[str, Any]) -> dict[str, Any]:
    # `distillation: {balance: auto, …}` is `distillation_balance: auto`
    if isinstance(data.get("distillation"), dict) and "balance" in data["distillation"]:
        losses = dict(data["distillation"])
        data = {**data, "distillation": losses, "distillation_balance": losses.pop("balance")}
    # `loss: {name: 1.0}` is shorthand for `{name: {weight: 1.0}}`
    for key in ("loss", "distillation"):
        if isinstance(data.get(key), dict):
            data = {
                **data,
                key: {
                    k: ({"weight": v} if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                    for k, v in data[key].items()
                },
            }
    return data
