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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (a binary file?)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror or exc})") from None
    if data is None:
        raise ConfigError(f"config file {str(path)!r} is empty; `prunekit demo --config-only` prints a complete one")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections, not {type(data).__name__}")
    return data


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
