"""The plugin manager: loads plugins, builds the registries, answers lookups by name.

Built-in plugins are ordinary entry points of the ``prunekit`` distribution, so they are found
exactly like third-party ones; they are registered first, other installed entry points after,
then whatever ``plugins.load`` names. A broken third-party plugin is skipped with a warning
naming it (an error when ``PRUNEKIT_STRICT_PLUGINS=1``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from torch import nn

from . import hookspecs
from .errors import PluginError, PrunekitError, one_line, suggest
from .layer_type import LayerType
from .records import Spec, Traversal

GROUP = "prunekit"
SELF_DIST = "prunekit"

#: registry kind -> hook returning its records
KINDS = {
    "layer_type": "prunekit_layer_types",
    "model": "prunekit_models",
    "dataset": "prunekit_datasets",
    "criterion": "prunekit_criteria",
    "task_loss": "prunekit_task_losses",
    "distillation": "prunekit_distillation_losses",
    "logger": "prunekit_loggers",
    "task": "prunekit_tasks",
    "preset": "prunekit_presets",
}
EVENTS = ("run_started", "step_done", "epoch_done", "run_finished")


def strict() -> bool:
    return os.environ.get("PRUNEKIT_STRICT_PLUGINS", "") not in ("", "0")


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    source: str = "entry point"


@dataclass
class Entry:
    record: Any
    plugin: str


@dataclass
class Manager:
    """One set of loaded plugins and the registries built from them."""

    load: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    autoload: bool = True
    pm: pluggy.PluginManager = field(init=False)
    info: dict[str, PluginInfo] = field(init=False, default_factory=dict)
    _registries: dict[str, dict[str, Entry]] = field(init=False, default_factory=dict)
    _layer_cache: dict[type, LayerType | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        for name in self.disable:
            self.pm.set_blocked(name)
        entry_points = sorted(metadata.entry_points(group=GROUP), key=_builtin_first)
        for ep in entry_points:
            if (ep.dist is not None and ep.dist.name == SELF_DIST) or self.autoload or ep.name in self.load:
                self._load_entry_point(ep)
        for name in self.load:
            if name not in self.info:
                self._load_named(name, entry_points)

    # -- loading ---------------------------------------------------------------------------
    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        if self.pm.is_blocked(ep.name) or ep.name in self.info:
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a third-party plugin may fail in any way
            self._broken(ep.name, f"failed to load ({one_line(exc)})")
            return
        dist = ep.dist
        if self._register_loaded(plugin, ep.name):
            self.info[ep.name] = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None)

    def _load_named(self, name: str, entry_points: Iterable[metadata.EntryPoint]) -> None:
        for ep in entry_points:
            if ep.name == name:
                self._load_entry_point(ep)
                return
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that does not exist
            found = False
        if not found:
            names = [ep.name for ep in entry_points]
            raise PluginError(
                f"plugins.load: no installed plugin or importable module {name!r}; {suggest(name, names)}"
            )
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # found, but its code fails: a broken plugin, not a missing one
            self._broken(name, f"failed to import ({one_line(exc)})")
            return
        if self.pm.is_registered(module):
            return  # a built-in or installed plugin named by its module path: already there
        if self._register_loaded(module, name):
            self.info[name] = PluginInfo(name, source="module")

    def _register_loaded(self, plugin: object, name: str) -> bool:
        """Register a loaded plugin; one whose hooks do not match the contract is broken."""
        try:
            self.register(plugin, name)
        except PluginError as exc:
            self._broken(name, str(exc).removeprefix(f"plugin {name!r} "))
            return False
        return True

    def _broken(self, name: str, why: str) -> None:
        message = f"plugin {name!r} {why}"
        if strict():
            raise PluginError(message)
        warnings.warn(message + "; it is skipped", RuntimeWarning, stacklevel=3)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module; :class:`PluginError` if a hook does not match its spec."""
        try:
            registered = self.pm.register(plugin, name)
        except pluggy.PluginValidationError as exc:
            detail = " ".join(str(exc).split())
            raise PluginError(f"plugin {name or exc.plugin!r} does not match the hook contract ({detail})") from None
        if registered is None:  # blocked
            return ""
        name = registered
        self.info.setdefault(name, PluginInfo(name, source="registered"))
        self._invalidate()
        return name

    def unregister(self, plugin: object) -> None:
        name = self.pm.get_name(plugin)
        self.pm.unregister(plugin)
        if name is not None:
            self.info.pop(name, None)
        self._invalidate()

    def _invalidate(self) -> None:
        self._registries.clear()
        self._layer_cache.clear()

    # -- registries ------------------------------------------------------------------------
    def registry(self, kind: str) -> dict[str, Entry]:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; {suggest(kind, KINDS)}")
        if kind not in self._registries:
            self._registries[kind] = self._collect(kind)
        return self._registries[kind]

    def _collect(self, kind: str) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for impl in getattr(self.pm.hook, KINDS[kind]).get_hookimpls():
            try:
                records = list(impl.function() or ())
            except Exception as exc:
                self._broken(impl.plugin_name, f"raised in {KINDS[kind]} ({type(exc).__name__}: {exc})")
                continue
            for record in records:
                name = getattr(record, "name", None)
                if not isinstance(name, str) or not name:
                    self._broken(impl.plugin_name, f"returned a {kind} record without a name: {record!r}")
                    continue
                if name in found:
                    raise PluginError(
                        f"{kind} {name!r} is registered by both {found[name].plugin!r} and "
                        f"{impl.plugin_name!r}; disable one with plugins.disable"
                    )
                found[name] = Entry(record, impl.plugin_name)
        return found

    def names(self, kind: str) -> list[str]:
        return sorted(self.registry(kind))

    def spec(self, kind: str, name: str) -> Any:
        entries = self.registry(kind)
        if name not in entries:
            raise PluginError(f"unknown {kind.replace('_', ' ')} {name!r}; {suggest(name, entries)}")
        return entries[name].record

    def get(self, kind: str, name: str, **params: Any) -> Any:
        record = self.spec(kind, name)
        if isinstance(record, Spec):
            try:
                return record.factory(**params)
            except PrunekitError:
                raise
            except TypeError as exc:
                raise PluginError(f"{kind.replace('_', ' ')} {name!r}: bad arguments {params} ({exc})") from None
            except Exception as exc:  # the factory refused its arguments in its own way
                raise PluginError(
                    f"{kind.replace('_', ' ')} {name!r} failed with arguments {params} ({one_line(exc)})"
                ) from None
        if params:
            raise PluginError(f"{kind.replace('_', ' ')} {name!r} takes no arguments")
        return record

    def layer_type(self, cls: type) -> LayerType | None:
        """The layer type registered for ``cls`` or its nearest base class, or ``None``."""
        if cls not in self._layer_cache:
            by_class = {entry.record.module: entry.record for entry in self.registry("layer_type").values()}
            self._layer_cache[cls] = next((by_class[c] for c in cls.__mro__ if c in by_class), None)
        return self._layer_cache[cls]

    def traversal(self, model: nn.Module) -> Traversal | None:
        """The first traversal plugin's answer for ``model``, or ``None``."""
        return next((t for t in self._call("traversal", model=model) if t is not None), None)

    def notify(self, event: str, **kwargs: Any) -> None:
        """Broadcast a lifecycle event; a plugin that raises ends it with :class:`PluginError`."""
        if event not in EVENTS:
            raise PluginError(f"unknown event {event!r}; {suggest(event, EVENTS)}")
        for _ in self._call(event, **kwargs):
            pass

    def _call(self, hook: str, **kwargs: Any) -> Iterator[Any]:
        """Each implementation's answer, in pluggy's calling order, errors naming the plugin."""
        for impl in reversed(getattr(self.pm.hook, f"prunekit_{hook}").get_hookimpls()):
            try:
                yield impl.function(*(kwargs[arg] for arg in impl.argnames))
            except PrunekitError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in prunekit_{hook} ({one_line(exc)})") from exc

    # -- listing ---------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """What ``prunekit plugins`` prints: each plugin, its distribution, what it registers."""
        registers: dict[str, dict[str, list[str]]] = {}
        for kind in KINDS:
            for name, entry in self.registry(kind).items():
                registers.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            info = self.info.get(name, PluginInfo(name))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or ())
            rows.append(
                {
                    "name": name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "source": info.source,
                    "hooks": hooks,
                    "registers": {k: sorted(v) for k, v in sorted(registers.get(name, {}).items())},
                }
            )
        return rows


def _builtin_first(ep: metadata.EntryPoint) -> tuple[int, str]:
    return (0 if ep.dist is not None and ep.dist.name == SELF_DIST else 1, ep.name)


@functools.cache
def manager() -> Manager:
    """The process-wide plugin manager (created on first use with default settings)."""
    return Manager()


def for_settings(load: Iterable[str] = (), disable: Iterable[str] = (), autoload: bool = True) -> Manager:
    """A manager with these ``plugins`` settings: the process-wide one when they are the defaults
    (so plugins registered on it count), else a new one."""
    load, disable = tuple(load), tuple(disable)
    if not load and not disable and autoload:
        return manager()
    return Manager(load, disable, autoload)


@contextlib.contextmanager
def registered(plugin: object, name: str | None = None) -> Iterator[Manager]:
    """Register ``plugin`` on the process-wide manager for the duration of a ``with`` block."""
    pm = manager()
    pm.register(plugin, name)
    try:
        yield pm
    finally:
        pm.unregister(plugin)


def get(kind: str, name: str, **params: Any) -> Any:
    """A registered plugin object by name: built from its factory with ``params``."""
    return manager().get(kind, name, **params)
