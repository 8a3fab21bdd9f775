"""Parsing what the command line gives: sizes, builder arguments, ``--set`` settings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..run.config_source import yaml_value


def parse_ints(text: str, what: str) -> list[int]:
    tokens = re.split(r"[,x×]", text.strip())
    if not all(re.fullmatch(r"\s*[0-9]+\s*", t) and int(t) > 0 for t in tokens):
        raise ConfigError(f"{what}: {text!r} must be positive integers separated by commas, e.g. 1,1,640,400")
    return [int(t) for t in tokens]


def parse_pairs(items: Sequence[str], flag: str, dotted: bool = False) -> dict[str, Any]:
    """``key=value`` items (``a.b=value`` with ``dotted``) with YAML values, by key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        valid = all(part.isidentifier() for part in key.split(".")) if dotted else key.isidentifier()
        if not sep or not valid:
            form = "section.key=value, e.g. pruning.prune_away_percent=30" if dotted else "key=value, the key a name"
            raise ConfigError(f"{flag}: {item!r} must look like {form}")
        out[key] = yaml_value(value, f"{flag} {key}")
    return out
