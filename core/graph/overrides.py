"""Your cost functions: which layers they price, and the checks on what they return.

``overrides`` maps keys to functions ``fn(module, shape) -> cost``. A key is a module's qualified
name (``"down1.conv.0"``), a glob over names (``"encoder.*"``), or a layer class: the class
itself, a dotted import path (``"pkg.layers.Gate"``) or a short ``torch.nn`` name
(``"Conv2d"``). For one layer the most specific key wins: its name, then the longest glob that
matches it, then its class or the nearest base class. A function may also be given by import
path, ``"pkg.module:function"`` (in YAML: found beside the config file, as ``model.factory`` is).

A function prices a layer; it never changes how the layer is cut. It is called with the layer's
real shape when counting and with hypothetical shapes (fewer input or output channels) when the
selection predicts a cut, so it must depend on ``shape`` and the module's static attributes
(kernel size, stride, …) only — not on its current weight sizes.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError, PrunekitError, one_line, suggest
from ..imports import import_callable, import_object
from ..layer_type import LayerShape

CostFn = Callable[[nn.Module, LayerShape], float]
#: key (a module name, a glob, a class or its import path) -> function (or its ``pkg.mod:fn`` path)
Overrides = Mapping[Any, CostFn | str]
GLOB = frozenset("*?[")


@dataclass(frozen=True)
class CostFunction:
    """One user function, with the setting and key it was given under (for messages)."""

    setting: str
    key: str
    fn: CostFn

    def __call__(self, layer: str, module: nn.Module, shape: LayerShape) -> float:
        """The function's value for ``layer`` at ``shape``: a finite number >= 0, or ConfigError."""
        where = f"{self.setting}[{self.key!r}] on layer {layer!r}"
        try:
            value = self.fn(module, shape)
        except PrunekitError:
            raise
        except Exception as exc:
            raise ConfigError(f"{where} raised {one_line(exc)} (shape {_shape_text(shape)})") from exc
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"{where} returned {value!r} (shape {_shape_text(shape)}); it must return a finite number >= 0"
            )
        return int(value) if isinstance(value, numbers.Integral) else float(value)


def _shape_text(shape: LayerShape) -> str:
    return f"{shape.in_channels}→{shape.out_channels} channels, output {'×'.join(map(str, shape.output))}"


@dataclass(frozen=True)
class LayerCostFunctions:
    """The functions that price one layer: its MACs, its parameters (``None``: the layer type's)."""

    macs: CostFunction | None = None
    params: CostFunction | None = None

    def __bool__(self) -> bool:
        return self.macs is not None or self.params is not None


@dataclass
class KeyedFunctions:
    """One setting's overrides, the functions imported; the keys are resolved against a model by
    :meth:`bind`, since a key may be one of its module names."""

    setting: str
    entries: list[tuple[Any, CostFunction]] = field(default_factory=list)
    search: tuple[str, ...] = ()

    @classmethod
    def parse(cls, overrides: Overrides | None, setting: str, search: Iterable[str] = ()) -> KeyedFunctions:
        """Import the functions named by path and check every key's type (no model needed)."""
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError(
                f"{setting}: expected a mapping of layer to cost function, not {type(overrides).__name__}"
            )
        search = tuple(search)
        entries = []
        for key, fn in (overrides or {}).items():
            label = key.__qualname__ if isinstance(key, type) else str(key)
            if isinstance(key, type):
                if not issubclass(key, nn.Module):
                    raise ConfigError(f"{setting}: key {label!r} is not an nn.Module class")
            elif not isinstance(key, str) or not key:
                raise ConfigError(
                    f"{setting}: key {key!r} is neither a module name, a glob, a layer class nor its import path"
                )
            function = import_callable(fn, f"{setting}[{label!r}]", search) if isinstance(fn, str) else fn
            if not callable(function):
                raise ConfigError(f"{setting}[{label!r}]: {function!r} is not callable")
            entries.append((key, CostFunction(setting, label, function)))
        return cls(setting, entries, search)

    def keys(self) -> list[str]:
        """The keys as given (classes by name), for reports."""
        return [fn.key for _, fn in self.entries]

    def bind(self, model: nn.Module) -> ResolvedFunctions:
        """The keys resolved against ``model``'s module names and classes; a key that matches no
        module is a ConfigError naming the closest names."""
        modules = {name: m for name, m in model.named_modules() if name}
        classes = {c for m in model.modules() for c in type(m).__mro__ if issubclass(c, nn.Module)}
        bound = ResolvedFunctions()
        for key, fn in self.entries:
            if isinstance(key, str) and key in modules:
                bound.names[key] = fn
            elif isinstance(key, str) and GLOB & set(key):
                if not any(fnmatch.fnmatchcase(name, key) for name in modules):
                    raise ConfigError(f"{self.setting}: glob {key!r} matches no module; {suggest(key, modules)}")
                bound.globs.append((key, fn))
            else:
                cls = key if isinstance(key, type) else self._layer_class(key, modules)
                if cls not in classes:
                    present = sorted({type(m).__name__ for m in modules.values()})
                    raise ConfigError(
                        f"{self.setting}: no module of the model is a {cls.__name__}; {suggest(cls.__name__, present)}"
                    )
                bound.classes[cls] = fn
        bound.globs.sort(key=lambda entry: -len(entry[0]))  # the most specific pattern first
        return bound

    def _layer_class(self, key: str, modules: Mapping[str, nn.Module]) -> type:
        """A key that names no module: a short ``torch.nn`` name or an import path of a class."""
        short = getattr(nn, key, None) if "." not in key and ":" not in key else None
        if isinstance(short, type) and issubclass(short, nn.Module):
            return short
        if "." not in key:
            names = [*modules, *(type(m).__name__ for m in modules.values())]
            raise ConfigError(
                f"{self.setting}: {key!r} is no module name, glob or torch.nn class of the model; {suggest(key, names)}"
            )
        try:
            cls = import_object(key, f"{self.setting} key", self.search)
        except ConfigError as exc:
            raise ConfigError(
                f"{self.setting}: {key!r} is no module of the model ({suggest(key, modules)}) "
                f"and no importable layer class ({str(exc).partition(': ')[2]})"
            ) from None
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise ConfigError(f"{self.setting}: {key!r} is not an nn.Module class")
        return cls


@dataclass
class ResolvedFunctions:
    """One setting's functions by module name, by glob (longest first) and by class."""

    names: dict[str, CostFunction] = field(default_factory=dict)
    globs: list[tuple[str, CostFunction]] = field(default_factory=list)
    classes: dict[type, CostFunction] = field(default_factory=dict)

    def exact(self, name: str, module: nn.Module) -> CostFunction | None:
        """The function for this module by its name or class — what makes a module with no layer
        type a layer of its own."""
        if name in self.names:
            return self.names[name]
        return next((self.classes[c] for c in type(module).__mro__ if c in self.classes), None)

    def lookup(self, name: str, module: nn.Module) -> CostFunction | None:
        """The function for layer ``name``: by name, else the longest glob, else by class."""
        if name in self.names:
            return self.names[name]
        matched = next((fn for pattern, fn in self.globs if fnmatch.fnmatchcase(name, pattern)), None)
        return matched or self.exact(name, module)


@dataclass
class CostFunctions:
    """The user's MACs and parameter functions (``cost.overrides``, ``cost.param_overrides``)."""

    macs: KeyedFunctions = field(default_factory=lambda: KeyedFunctions("cost.overrides"))
    params: KeyedFunctions = field(default_factory=lambda: KeyedFunctions("cost.param_overrides"))

    @classmethod
    def of(
        cls,
        overrides: Overrides | CostFunctions | None = None,
        param_overrides: Overrides | None = None,
        search: Iterable[str] = (),
    ) -> CostFunctions:
        if isinstance(overrides, CostFunctions):
            return overrides
        return cls(
            KeyedFunctions.parse(overrides, "cost.overrides", search),
            KeyedFunctions.parse(param_overrides, "cost.param_overrides", search),
        )

    def __bool__(self) -> bool:
        return bool(self.macs.entries or self.params.entries)

    def bind(self, model: nn.Module) -> ResolvedCostFunctions:
        return ResolvedCostFunctions(self.macs.bind(model), self.params.bind(model))


@dataclass
class ResolvedCostFunctions:
    macs: ResolvedFunctions
    params: ResolvedFunctions

    def check_globs(self, layers: Iterable[str]) -> None:
        """A glob matching modules but none of the model's ``layers`` (only containers) prices
        nothing: say so rather than count without it."""
        layers = list(layers)
        for functions in (self.macs, self.params):
            for pattern, fn in functions.globs:
                if not any(fnmatch.fnmatchcase(name, pattern) for name in layers):
                    raise ConfigError(
                        f"{fn.setting}: glob {pattern!r} matches only modules that hold layers, not layers, so it "
                        f"prices nothing; match the layers inside ({pattern + '.*'!r}) or name one module to price "
                        "it as one layer"
                    )

    def prices(self, name: str, module: nn.Module, typed: bool) -> LayerCostFunctions:
        """What prices layer ``name``. A module without a layer type (``typed`` false) is priced
        only by a key naming it or its class: a glob never makes a container a layer."""
        find = self.macs.lookup if typed else self.macs.exact
        find_params = self.params.lookup if typed else self.params.exact
        return LayerCostFunctions(find(name, module), find_params(name, module))
