"""Cost accounting: MACs and parameters per layer, per block and in total.

MACs come from the layer types' pure functions of each call's shape record; the default total
counts convolutions and linear layers without bias (the IPAD convention); ``include`` adds the
optional kinds. ``flops`` is ``2 × macs``. Parameters are the model's real tensors, each counted
once however many modules share it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Union

import torch
from torch import nn

from . import plugin_manager
from .errors import ConfigError, PruneError, suggest
from .recording import Call, leaves, record
from .text import human, render_table
from .types import COST_KINDS, OPTIONAL_COST_KINDS, LayerShape, LayerType, Traversal

CostFn = Callable[[nn.Module, LayerShape], int]
Overrides = Mapping[Union[type, str], Union[CostFn, str]]
ALWAYS = ("conv", "linear", "custom")


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
        return int(self.fn(module, shape))

    def params(self, module: nn.Module, shape: LayerShape) -> int:
        return sum(p.numel() for p in module.parameters())


Rule = Union[LayerType, Override]


def resolve_overrides(overrides: Overrides | None) -> dict[type, Override]:
    """Turn ``{class or "pkg.mod.Class": fn or "pkg.mod:fn"}`` into rules, or raise ConfigError."""
    resolved: dict[type, Override] = {}
    for key, fn in (overrides or {}).items():
        cls = _import_object(key, "cost.overrides key", sep=".") if isinstance(key, str) else key
        if not isinstance(cls, type) or not issubclass(cls, nn.Module):
            raise ConfigError(f"cost.overrides: {key!r} is not an nn.Module class")
        fn = _import_object(fn, f"cost.overrides[{key!r}]", sep=":") if isinstance(fn, str) else fn
        if not callable(fn):
            raise ConfigError(f"cost.overrides[{key!r}]: {fn!r} is not callable")
        resolved[cls] = Override(cls, fn)
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


def channels(size: tuple[int, ...], dim: int) -> int:
    if not size or not -len(size) <= dim < len(size):
        return 1
    return size[dim]


def shape_of(call: Call, rule: Rule) -> LayerShape:
    return LayerShape(call.input, call.output, channels(call.input, rule.in_dim), channels(call.output, rule.out_dim))


def parse_include(include: str | Iterable[str] | None) -> tuple[str, ...]:
    if include is None:
        return ALWAYS
    kinds = (include,) if isinstance(include, str) else tuple(include)
    if "all" in kinds:
        kinds = OPTIONAL_COST_KINDS
    for kind in kinds:
        if kind not in COST_KINDS:
            raise ConfigError(f"cost.include: unknown kind {kind!r}; {suggest(kind, (*OPTIONAL_COST_KINDS, 'all'))}")
    return ALWAYS + tuple(kinds)


@dataclass
class LayerCost:
    name: str
    type: str
    kind: str
    in_channels: int
    out_channels: int
    output_shape: tuple[int, ...]
    macs: int
    params: int
    calls: int = 1


@dataclass
class BlockCost:
    name: str
    macs: int = 0
    params: int = 0
    layers: int = 0


@dataclass
class CostReport:
    """What :func:`count` returns: totals, per-layer rows and per-block sums."""

    macs: int
    params: int
    trainable_params: int
    layers: list[LayerCost]
    blocks: list[BlockCost]
    include: tuple[str, ...]
    uncounted: list[str] = field(default_factory=list)
    fallback: str | None = None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def layer(self, name: str) -> LayerCost:
        for row in self.layers:
            if row.name == name:
                return row
        raise PruneError(f"no layer {name!r} in the report; {suggest(name, [r.name for r in self.layers])}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flops"] = self.flops
        return out

    def table(self, depth: int | None = None) -> str:
        """Aligned per-layer (or per-module at ``depth``) table, then blocks and totals."""
        rows = self.layers if depth is None else _by_depth(self.layers, depth)
        body = [[r.name, r.type, f"{r.in_channels}", f"{r.out_channels}",
                 "×".join(map(str, r.output_shape)), human(r.macs), human(r.params)] for r in rows]
        text = render_table(["layer", "type", "in", "out", "output", "MACs", "params"], body, right=(2, 3, 5, 6))
        blocks = [[b.name, str(b.layers), human(b.macs), human(b.params)] for b in self.blocks]
        text += "\n\n" + render_table(["block", "layers", "MACs", "params"], blocks, right=(1, 2, 3))
        text += (f"\n\ntotal: {human(self.macs)} MACs ({human(self.flops)} FLOPs), {human(self.params)} params"
                 f" ({human(self.trainable_params)} trainable); counted kinds: {', '.join(self.include)}")
        if self.uncounted:
            text += f"\nuncounted (parameters but no cost rule): {', '.join(self.uncounted)}"
        if self.fallback:
            text += f"\nnote: {self.fallback}"
        return text


def _by_depth(rows: list[LayerCost], depth: int) -> list[LayerCost]:
    merged: dict[str, LayerCost] = {}
    for r in rows:
        key = ".".join(r.name.split(".")[:depth])
        if key not in merged:
            merged[key] = LayerCost(key, r.type if key == r.name else "module", r.kind, r.in_channels,
                                    r.out_channels, r.output_shape, 0, 0, 0)
        m = merged[key]
        m.macs, m.params, m.calls = m.macs + r.macs, m.params + r.params, m.calls + r.calls
        m.out_channels, m.output_shape = r.out_channels, r.output_shape
    return list(merged.values())


def block_of(name: str, blocks: tuple[str, ...]) -> str:
    """The longest block path prefixing ``name``; the parent module when no block matches."""
    matches = [b for b in blocks if name == b or name.startswith(b + ".")]
    if matches:
        return max(matches, key=len)
    return name.rpartition(".")[0] or name


def layer_rows(calls: list[Call], rules: Callable[[nn.Module], Rule | None], include: tuple[str, ...]) -> list[LayerCost]:
    rows: dict[str, LayerCost] = {}
    for call in calls:
        rule = rules(call.module)
        shape = shape_of(call, rule)
        macs = rule.macs(call.module, shape) if rule.kind in include else 0
        if call.name in rows:
            rows[call.name].macs += macs
            rows[call.name].calls += 1
            continue
        params = rule.params(call.module, shape)
        if rule.kind not in include and params == 0:
            continue
        rows[call.name] = LayerCost(call.name, type(call.module).__name__, rule.kind, shape.in_channels,
                                    shape.out_channels, call.output, macs, params)
    return list(rows.values())


def uncounted_layers(model: nn.Module, layer_names: Iterable[str], rules: Callable[[nn.Module], Rule | None]) -> list[str]:
    covered = tuple(layer_names)
    out = []
    for name, module in model.named_modules():
        inside = any(name == c or name.startswith(c + ".") for c in covered if c)
        if not inside and rules(module) is None and any(True for _ in module.parameters(recurse=False)):
            out.append(name or type(module).__name__)
    return out


def count(
    model: nn.Module,
    example_input: Any,
    overrides: Overrides | None = None,
    include: str | Iterable[str] | None = None,
    traversal: Traversal | None = None,
) -> CostReport:
    """Count MACs and parameters of ``model`` on ``example_input`` (shape-only where possible).

    ``overrides`` maps module classes (or dotted names) to ``fn(module, shape) -> MACs``.
    ``include`` adds ``"norm"``, ``"activation"``, ``"pooling"``, ``"upsample"`` (or ``"all"``).
    Blocks come from the traversal plugin that recognises the model (parent modules otherwise).
    """
    kinds = parse_include(include)
    rules = Rules(overrides)
    layers = leaves(model, lambda m: rules(m) is not None)
    recording = run(model, example_input, layers)
    rows = layer_rows(recording.calls, rules, kinds)
    traversal = traversal or rules.manager.traversal(model)
    blocks: dict[str, BlockCost] = {}
    for row in rows:
        b = blocks.setdefault(block_of(row.name, traversal.blocks if traversal else ()), BlockCost(""))
        b.macs, b.params, b.layers = b.macs + row.macs, b.params + row.params, b.layers + 1
    params = list(model.parameters())
    return CostReport(
        macs=sum(r.macs for r in rows),
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        layers=rows,
        blocks=[BlockCost(name, b.macs, b.params, b.layers) for name, b in blocks.items()],
        include=kinds,
        uncounted=uncounted_layers(model, layers, rules),
        fallback=recording.fallback,
    )


def run(model: nn.Module, example_input: Any, layers: dict[str, nn.Module], **kwargs: Any):
    """:func:`recording.record`, with a model that fails on the example input reported as bad input."""
    try:
        return record(model, example_input, layers, **kwargs)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        raise PruneError(f"the model failed on the example input ({type(exc).__name__}: {exc})") from exc
