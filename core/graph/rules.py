"""Which rule counts and cuts a module: a user's cost override, else a layer-type plugin.

Both the tracer (how channels flow through a layer) and the cost accounting (what a layer costs)
ask the same question, so the answer lives below both.
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import plugin_manager
from ..errors import ConfigError
from ..layer_type import LayerShape, LayerType
from .recording import leaves

CostFn = Callable[[nn.Module, LayerShape], int]
#: module class (or its dotted name) -> cost function (or its ``pkg.mod:fn`` name)
Overrides = Mapping[Any, CostFn | str]


@dataclass(frozen=True)
class Override:
    """A user's cost function for one module class; wins over every layer-type plugin."""

    module: type
    fn: CostFn
    kind: str = "custom"
    in_dim: int = 1
    out_dim: int = 1

    @property
    def name(self) -> str:
        return self.module.__name__

    def macs(self, module: nn.Module, shape: LayerShape) -> int:
        value = self.fn(module, shape)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            fn = getattr(self.fn, "__qualname__", repr(self.fn))
            raise ConfigError(
                f"cost override {fn} for {self.name} returned {value!r}; it must return MACs as an integer >= 0"
            )
        return int(value)

    def params(self, module: nn.Module, shape: LayerShape) -> int:
        return sum(p.numel() for p in module.parameters())


Rule = LayerType | Override


def resolve_overrides(overrides: Overrides | None) -> dict[type, Override]:
    """Turn ``{class or "pkg.mod.Class": fn or "pkg.mod:fn"}`` into rules, or raise ConfigError."""
    resolved: dict[type, Override] = {}
    for key, fn in (overrides or {}).items():
        cls = _import_object(key, "cost.overrides key", sep=".") if isinstance(key, str) else key
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise ConfigError(f"cost.overrides: {key!r} is not an nn.Module class")
        function = _import_object(fn, f"cost.overrides[{key!r}]", sep=":") if isinstance(fn, str) else fn
        if not callable(function):
            raise ConfigError(f"cost.overrides[{key!r}]: {function!r} is not callable")
        resolved[cls] = Override(cls, function)
    return resolved


def _import_object(path: str, what: str, sep: str) -> Any:
    module_name, _, attr = path.rpartition(sep) if sep == "." else path.partition(sep)
    if not module_name or not attr:
        form = "pkg.mod.Class" if sep == "." else "pkg.mod:function"
        raise ConfigError(f"{what}: {path!r} must look like {form!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{what}: cannot import {path!r} ({exc})") from None


class Rules:
    """Finds the cost/cut rule of a module: user overrides first, then layer-type plugins (MRO)."""

    def __init__(self, overrides: Overrides | None = None, manager: plugin_manager.Manager | None = None) -> None:
        self.overrides = resolve_overrides(overrides)
        self.manager = manager or plugin_manager.manager()

    def __call__(self, module: nn.Module) -> Rule | None:
        for cls in type(module).__mro__:
            if cls in self.overrides:
                return self.overrides[cls]
        return self.manager.layer_type(type(module))

    def leaves(self, model: nn.Module) -> dict[str, tuple[nn.Module, Rule]]:
        """The outermost modules that have a rule, by name, with their rule."""
        found = leaves(model, lambda m: self(m) is not None)
        return {name: (m, rule) for name, m in found.items() if (rule := self(m)) is not None}


def channels(size: tuple[int, ...], dim: int) -> int:
    if not size or not -len(size) <= dim < len(size):
        return 1
    return size[dim]
