"""Finding plugins: installed entry points of the ``prunekit`` group, modules by dotted name (also
in the config's folder), and plugin files by path; plus the settings that come from the
environment (``PRUNEKIT_PLUGINS``, ``PRUNEKIT_DISABLE_PLUGINS``, ``PRUNEKIT_STRICT_PLUGINS``,
``PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD``, ``PRUNEKIT_VERBOSE``), which the command line's
``--plugin``/``--no-plugin``/``--verbose`` set."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from types import ModuleType

from ..errors import PluginError, suggest

GROUP = "prunekit"
SELF_DIST = "prunekit"


def env_list(name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


def autoload_allowed() -> bool:
    """False when ``PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD`` is set: only built-ins and named plugins load."""
    return os.environ.get("PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")


def strict() -> bool:
    return os.environ.get("PRUNEKIT_STRICT_PLUGINS", "") not in ("", "0")


def verbose() -> bool:
    return os.environ.get("PRUNEKIT_VERBOSE", "") not in ("", "0")


def entry_points() -> list[metadata.EntryPoint]:
    """Every ``prunekit`` entry point, the built-ins (this distribution's) first."""

    def builtin_first(ep: metadata.EntryPoint) -> tuple[int, str]:
        return (0 if ep.dist is not None and ep.dist.name == SELF_DIST else 1, ep.name)

    return sorted(metadata.entry_points(group=GROUP), key=builtin_first)


def is_path(name: str) -> bool:
    """``plugins.load`` entries that name a file rather than a module."""
    return name.endswith(".py") or "/" in name or os.sep in name


class ImportFailed(Exception):
    """A plugin that was found but whose code failed; ``details`` is its traceback."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}")
        self.details = "".join(traceback.format_exception(cause))


def import_plugin(name: str, search: Iterable[str], known: Iterable[str]) -> ModuleType:
    """The module ``name`` names: a file path, or a dotted name on ``sys.path`` or in a ``search``
    folder. :class:`PluginError` when there is none; :class:`ImportFailed` when its code fails."""
    if is_path(name):
        return _import_file(Path(name), search)
    for folder in search:
        if folder not in sys.path:
            sys.path.append(folder)  # the config's folder, after the installed packages
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that does not exist
        found = False
    if not found:
        raise PluginError(f"plugins.load: no installed plugin or importable module {name!r}; {suggest(name, known)}")
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise ImportFailed(exc) from exc


def _import_file(path: Path, search: Iterable[str]) -> ModuleType:
    candidates = [path] if path.is_absolute() else [Path(folder) / path for folder in search] + [path]
    file = next((p for p in candidates if p.is_file()), None)
    if file is None:
        raise PluginError(
            f"plugins.load: the plugin file {str(path)!r} does not exist "
            f"(looked in {', '.join(str(p.parent) for p in candidates)})"
        )
    module_name = f"prunekit_local_{file.stem}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugins.load: {str(file)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ImportFailed(exc) from exc
    return module
