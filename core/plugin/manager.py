"""The plugin manager: registers plugins, checks them against the hook contract, builds the
registries and answers lookups by name.

Built-in plugins are ordinary entry points of the ``prunekit`` distribution (named
``prunekit.<module>``), found exactly like third-party ones; they are registered first, other
installed entry points after, then whatever ``plugins.load`` names. Nothing fails silently: a
plugin that fails to load, a hook whose name is no hook, an unmarked hook function, an
entry-point name already taken — each is a warning naming the plugin (an error when
``PRUNEKIT_STRICT_PLUGINS=1``). Two plugins registering one name (or two layer types one module
class) is a clash: asking for that name fails, naming both, while everything else works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from torch import nn

from ..errors import PluginError, PrunekitError, one_line, suggest
from ..layer_type import LayerType
from ..records import Spec, Traversal
from ..schema import build
from . import events, hookspecs
from .contract import EVENTS, HOOKS, KINDS, class_key, invalid, record_key
from .loading import (
    GROUP,
    SELF_DIST,
    ImportFailed,
    autoload_allowed,
    entry_points,
    env_list,
    import_plugin,
    strict,
    verbose,
)


@dataclass
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    source: str = "entry point"


@dataclass
class Registered:
    record: Any
    plugin: str


@dataclass
class Manager:
    """One set of loaded plugins and the registries built from them.

    ``load`` and ``disable`` are extended by ``PRUNEKIT_PLUGINS`` and ``PRUNEKIT_DISABLE_PLUGINS``
    (comma-separated); ``search`` are folders where ``load`` also finds modules and files (a
    config's own folder).
    """

    load: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    autoload: bool = True
    search: tuple[str, ...] = ()
    pm: pluggy.PluginManager = field(init=False)
    info: dict[str, PluginInfo] = field(init=False, default_factory=dict)
    _registries: dict[str, dict[str, Registered]] = field(init=False, default_factory=dict)
    _clashes: dict[str, dict[str, list[str]]] = field(init=False, default_factory=dict)
    _layer_cache: dict[type, LayerType | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.load = tuple(dict.fromkeys((*self.load, *env_list("PRUNEKIT_PLUGINS"))))
        self.disable = tuple(dict.fromkeys((*self.disable, *env_list("PRUNEKIT_DISABLE_PLUGINS"))))
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.pm.add_hookspecs(events)
        found = entry_points()
        known = {ep.name for ep in found} | set(self.load)
        for name in self.disable:
            if name not in known:
                raise PluginError(f"plugins.disable: no plugin named {name!r}; {suggest(name, known)}")
            self.pm.set_blocked(name)
        for ep in found:
            builtin = ep.dist is not None and ep.dist.name == SELF_DIST
            if builtin or (self.autoload and autoload_allowed()) or ep.name in self.load:
                self._load_entry_point(ep)
        for name in self.load:
            if name not in self.info and not self.pm.is_blocked(name):
                self._load_named(name, found)

    # -- loading ---------------------------------------------------------------------------
    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        if self.pm.is_blocked(ep.name):
            return
        dist = ep.dist
        if ep.name in self.info:
            taken = self.info[ep.name].distribution
            if dist is None or taken != dist.name:
                owner = dist.name if dist else "?"
                self._broken(
                    ep.name,
                    f"of distribution {owner!r} has an entry-point name that {taken!r} took first; rename one of them",
                )
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a third-party plugin may fail in any way
            self._broken(ep.name, f"failed to load ({one_line(exc)})", ImportFailed(exc).details)
            return
        if self._register_loaded(plugin, ep.name):
            self.info[ep.name] = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None)

    def _load_named(self, name: str, found: list[metadata.EntryPoint]) -> None:
        for ep in found:
            if ep.name == name:
                self._load_entry_point(ep)
                return
        try:
            module = import_plugin(name, self.search, [ep.name for ep in found])
        except ImportFailed as exc:  # found, but its code fails: a broken plugin, not a missing one
            self._broken(name, f"was found but failed to import ({exc})", exc.details)
            return
        if self.pm.is_registered(module):
            return  # a built-in or installed plugin named by its module path: already there
        if self._register_loaded(module, name):
            self.info[name] = PluginInfo(
                name, source="file" if str(module.__name__).startswith("prunekit_local_") else "module"
            )

    def _register_loaded(self, plugin: object, name: str) -> bool:
        """Register a loaded plugin; one whose hooks do not match the contract is broken."""
        try:
            self.register(plugin, name)
        except PluginError as exc:
            self._broken(name, str(exc).removeprefix(f"plugin {name!r} "))
            return False
        return True

    def _broken(self, name: str, why: str, details: str = "", skipped: bool = True) -> None:
        """A plugin's mistake: a warning naming it (with its traceback under ``--verbose``), or an
        error in strict mode."""
        message = f"plugin {name!r} {why}"
        if strict():
            raise PluginError(message, details)
        shown = f"{message}; it is skipped" if skipped else message
        warnings.warn(shown + (f"\n{details}" if details and verbose() else ""), RuntimeWarning, stacklevel=3)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module; :class:`PluginError` if a hook does not match its spec."""
        try:
            registered = self.pm.register(plugin, name)
        except pluggy.PluginValidationError as exc:
            detail = " ".join(str(exc).split())
            raise PluginError(f"plugin {name or exc.plugin!r} does not match the hook contract ({detail})") from None
        if registered is None:  # blocked
            return ""
        self._check_hook_names(plugin, registered)
        self.info.setdefault(registered, PluginInfo(registered, source="registered"))
        self._invalidate()
        return registered

    def _check_hook_names(self, plugin: object, name: str) -> None:
        """A misspelled hook, or one without ``@prunekit.hookimpl``, would never be called."""
        for attr in dir(plugin):
            if not attr.startswith("prunekit_"):
                continue
            marked = getattr(getattr(plugin, attr, None), f"{GROUP}_impl", None) is not None
            if attr not in HOOKS:
                self._broken(
                    name, f"has a hook {attr!r}, which is no prunekit hook; {suggest(attr, HOOKS)}", skipped=False
                )
            elif not marked:
                self._broken(name, f"defines {attr} without @prunekit.hookimpl, so it is never called", skipped=False)

    def unregister(self, plugin: object) -> None:
        name = self.pm.get_name(plugin)
        self.pm.unregister(plugin)
        if name is not None:
            self.info.pop(name, None)
        self._invalidate()

    def _invalidate(self) -> None:
        self._registries.clear()
        self._clashes.clear()
        self._layer_cache.clear()

    # -- registries ------------------------------------------------------------------------
    def registry(self, kind: str) -> dict[str, Registered]:
        if kind not in KINDS:
            raise PluginError(f"unknown plugin kind {kind!r}; {suggest(kind, KINDS)}")
        if kind not in self._registries:
            self._registries[kind], self._clashes[kind] = self._collect(kind)
        return self._registries[kind]

    def _collect(self, kind: str) -> tuple[dict[str, Registered], dict[str, list[str]]]:
        found: dict[str, Registered] = {}
        clashes: dict[str, list[str]] = {}
        for impl in getattr(self.pm.hook, KINDS[kind]).get_hookimpls():
            try:
                records = list(impl.function() or ())
            except Exception as exc:
                self._broken(impl.plugin_name, f"raised in {KINDS[kind]} ({one_line(exc)})")
                continue
            for record in records:
                problem = invalid(kind, record)
                if problem:
                    self._broken(impl.plugin_name, f"returned {problem}")
                    continue
                key = record_key(kind, record)
                if key in found:
                    clashes.setdefault(key, [found[key].plugin]).append(impl.plugin_name)
                    continue
                found[key] = Registered(record, impl.plugin_name)
        if kind == "layer_type":  # clash by module class (above) and by name
            by_name: dict[str, Registered] = {}
            for entry in found.values():
                if entry.record.name in by_name:
                    clashes.setdefault(entry.record.name, [by_name[entry.record.name].plugin]).append(entry.plugin)
                else:
                    by_name[entry.record.name] = entry
            found = by_name
        return found, clashes

    def clashes(self) -> list[str]:
        """Every clash, as a sentence."""
        out = []
        for kind in KINDS:
            self.registry(kind)
            for name, plugins in self._clashes[kind].items():
                out.append(
                    f"{kind.replace('_', ' ')} {name!r} is registered by {' and '.join(map(repr, plugins))}; "
                    "disable all but one with plugins.disable"
                )
        return out

    def _clash(self, kind: str, name: str) -> None:
        plugins = self._clashes.get(kind, {}).get(name)
        if plugins:
            raise PluginError(
                f"{kind.replace('_', ' ')} {name!r} is registered by both "
                f"{' and '.join(map(repr, plugins))}; disable one with plugins.disable"
            )

    def names(self, kind: str) -> list[str]:
        return sorted(self.registry(kind))

    def spec(self, kind: str, name: str) -> Any:
        entries = self.registry(kind)
        self._clash(kind, name)
        if name not in entries:
            what = f"{kind.replace('_', ' ')} {name!r}"
            why = next((r for prefix, r in self.unavailable().items() if f"{kind} {name}".startswith(prefix)), None)
            raise PluginError(f"{what} is not available: {why}" if why else f"unknown {what}; {suggest(name, entries)}")
        return entries[name].record

    def unavailable(self) -> dict[str, str]:
        """What plugins would register but cannot here (``"kind prefix"`` -> why)."""
        out: dict[str, str] = {}
        for answer in self._call("unavailable"):
            if isinstance(answer, dict):
                out.update({str(k): str(v) for k, v in answer.items()})
        return out

    def arguments(self, kind: str, name: str, params: dict[str, Any], path: str | None = None) -> dict[str, Any]:
        """``params`` checked against the arguments the plugin declares (a dataclass ``Spec.args``),
        with the config's key paths and "did you mean"; unchanged when it declares none."""
        record = self.spec(kind, name)
        declared = getattr(record, "args", None)
        if declared is None:
            return params
        checked = build(declared, params, path or name)
        return {f.name: getattr(checked, f.name) for f in dataclasses.fields(checked)}

    def get(self, kind: str, name: str, **params: Any) -> Any:
        """The plugin object ``name`` of ``kind``, built from its factory with ``params`` (a
        logger's ``run_dir`` is what prunekit passes it, not one of its arguments)."""
        given = (params.pop("run_dir"),) if kind == "logger" and "run_dir" in params else ()
        return self.create(kind, name, given, params)

    def create(
        self, kind: str, name: str, given: tuple[Any, ...], params: dict[str, Any], path: str | None = None
    ) -> Any:
        """``factory(*given, **params)`` of the plugin ``name``: ``params`` are the user's arguments,
        checked against what the plugin declares; ``given`` are what prunekit passes (a logger's
        run directory)."""
        record = self.spec(kind, name)
        if not isinstance(record, Spec):
            if params or given:
                raise PluginError(f"{kind.replace('_', ' ')} {name!r} takes no arguments")
            return record
        params = self.arguments(kind, name, params, path)
        try:
            return record.factory(*given, **params)
        except PrunekitError:
            raise
        except TypeError as exc:
            raise PluginError(f"{kind.replace('_', ' ')} {name!r}: bad arguments {params} ({exc})") from None
        except Exception as exc:  # the factory refused its arguments in its own way
            raise PluginError(
                f"{kind.replace('_', ' ')} {name!r} failed with arguments {params} ({one_line(exc)})"
            ) from None

    def layer_type(self, cls: type) -> LayerType | None:
        """The layer type registered for ``cls`` or its nearest base class, or ``None``."""
        if cls not in self._layer_cache:
            entries = self.registry("layer_type")
            by_class = {record_key("layer_type", entry.record): entry.record for entry in entries.values()}
            owner = next((class_key(c) for c in cls.__mro__ if class_key(c) in by_class), None)
            if owner is not None:
                self._clash("layer_type", owner)
            self._layer_cache[cls] = by_class[owner] if owner is not None else None
        return self._layer_cache[cls]

    def approximations(self) -> list[str]:
        """The approximate cuts the registered layer types offer (``layer_norm``)."""
        return sorted({entry.record.approximation for entry in self.registry("layer_type").values()} - {None})

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


@functools.cache
def manager() -> Manager:
    """The process-wide plugin manager (created on first use with default settings)."""
    return Manager()


def for_settings(
    load: Iterable[str] = (), disable: Iterable[str] = (), autoload: bool = True, search: Iterable[str] = ()
) -> Manager:
    """A manager with these ``plugins`` settings: the process-wide one when they are the defaults
    (so plugins registered on it count), else one per distinct setting — loading a config and
    running it resolve the same manager."""
    load, disable = tuple(load), tuple(disable)
    if not load and not disable and autoload:
        return manager()
    return _for(load, disable, autoload, tuple(search))


@functools.cache
def _for(load: tuple[str, ...], disable: tuple[str, ...], autoload: bool, search: tuple[str, ...]) -> Manager:
    return Manager(load, disable, autoload, search)


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
