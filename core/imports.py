"""Objects a config names by import path — model factories, cost functions, layer classes — and
what a builder's signature says about them."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, one_line


def import_object(path: str, what: str, search: Iterable[str] = ()) -> Any:
    """``pkg.module:name`` (or ``pkg.module.name``), imported — also from the ``search`` folders
    (a config's own folder), which are tried after the installed packages. A module that is
    missing or fails while importing is a :class:`ConfigError` naming ``what`` and the cause."""
    module_name, _sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{what}: {path!r} must look like 'pkg.module:name'")
    for folder in search:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import {path!r} ({one_line(exc)})") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ConfigError(f"{what}: importing {module_name!r} failed ({one_line(exc)})") from exc
    if not hasattr(module, attr):
        raise ConfigError(f"{what}: cannot import {path!r} (module {module_name!r} has no {attr!r})")
    return getattr(module, attr)


def import_callable(path: str, what: str, search: Iterable[str] = ()) -> Any:
    """:func:`import_object`, which must be callable."""
    obj = import_object(path, what, search)
    if not callable(obj):
        raise ConfigError(f"{what}: {path!r} is not callable")
    return obj


def weight_arguments(builder: Any) -> dict[str, Any]:
    """The arguments of ``builder`` that load weights (``weights*``, ``pretrained*``, a backbone's
    too) and their defaults (``inspect.Parameter.empty`` where there is none); none where it has
    no signature to read."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.name.startswith(("weights", "pretrained"))}
