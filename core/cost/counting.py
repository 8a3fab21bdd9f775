"""Cost accounting: MACs and parameters per layer, per block and in total.

MACs come from the layer types' pure functions of each call's shape record; the default total
counts convolutions and linear layers without bias (the IPAD convention); ``include`` adds the
optional kinds. ``flops`` is ``2 × macs``. Parameters are the model's real tensors, each counted
once however many modules share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError, PruneError, suggest
from ..graph.overrides import CostFunctions, Overrides
from ..graph.recording import Call, record
from ..graph.rules import Rule, Rules, counted, custom, priced_params, shape_of
from ..graph.traversal import traversal_of
from ..layer_type import COST_KINDS, OPTIONAL_COST_KINDS
from ..records import Traversal
from ..seam import Factories, resolve
from .formatting import human, render_table

ALWAYS = ("conv", "linear", "custom")


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
    macs: float
    params: float
    calls: int = 1
    #: what the user's cost functions price of this layer: "", "macs", "params" or "macs, params"
    custom: str = ""


@dataclass
class BlockCost:
    name: str
    macs: float = 0
    params: float = 0
    layers: int = 0


@dataclass
class CostReport:
    """What :func:`count` returns: totals, per-layer rows and per-block sums. With cost functions
    (``overrides``, ``param_overrides``) the totals are in their units where they price a layer."""

    macs: float
    params: float
    trainable_params: int
    layers: list[LayerCost]
    blocks: list[BlockCost]
    include: tuple[str, ...]
    uncounted: list[str] = field(default_factory=list)
    fallback: str | None = None

    @property
    def flops(self) -> float:
        return 2 * self.macs

    def percent_of(self, original: CostReport) -> tuple[float, float]:
        """(MACs, parameters) as percent of ``original``'s (100 where the original has none)."""
        return tuple(
            100.0 * now / before if before else 100.0
            for now, before in ((self.macs, original.macs), (self.params, original.params))
        )  # type: ignore[return-value]

    def layer(self, name: str) -> LayerCost:
        for row in self.layers:
            if row.name == name:
                return row
        raise PruneError(f"no layer {name!r} in the report; {suggest(name, [r.name for r in self.layers])}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flops"] = self.flops
        return out

    def __str__(self) -> str:
        return f"{human(self.macs)} MACs, {human(self.params)} parameters (per layer: .table())"

    def table(self, depth: int | None = None) -> str:
        """Aligned per-layer (or per-module at ``depth``) table, then blocks and totals."""
        rows = self.layers if depth is None else _by_depth(self.layers, depth)
        priced = any(r.custom for r in self.layers)
        body = [
            [
                r.name,
                r.type,
                f"{r.in_channels}",
                f"{r.out_channels}",
                "×".join(map(str, r.output_shape)),
                human(r.macs),
                human(r.params),
                *([f"custom {r.custom}" if r.custom else ""] if priced else []),
            ]
            for r in rows
        ]
        headers = ["layer", "type", "in", "out", "output", "MACs", "params", *(["cost"] if priced else [])]
        text = render_table(headers, body, right=(2, 3, 5, 6))
        blocks = [[b.name, str(b.layers), human(b.macs), human(b.params)] for b in self.blocks]
        text += "\n\n" + render_table(["block", "layers", "MACs", "params"], blocks, right=(1, 2, 3))
        text += (
            f"\n\ntotal: {human(self.macs)} MACs ({human(self.flops)} FLOPs), {human(self.params)} params"
            f" ({human(self.trainable_params)} trainable); counted kinds: {', '.join(self.include)}"
        )
        if priced:
            layers = sum(1 for r in self.layers if r.custom)
            text += f"\n{layers} layers priced by your cost functions (custom): totals are in their units there"
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
            merged[key] = LayerCost(
                key,
                r.type if key == r.name else "module",
                r.kind,
                r.in_channels,
                r.out_channels,
                r.output_shape,
                0,
                0,
                0,
                r.custom if key == r.name else "",
            )
        m = merged[key]
        m.custom = m.custom or ("some" if r.custom else "")
        m.macs, m.params, m.calls = m.macs + r.macs, m.params + r.params, m.calls + r.calls
        m.out_channels, m.output_shape = r.out_channels, r.output_shape
    return list(merged.values())


def block_of(name: str, blocks: tuple[str, ...]) -> str:
    """The longest block path prefixing ``name``; the parent module when no block matches."""
    matches = [b for b in blocks if name == b or name.startswith(b + ".")]
    if matches:
        return max(matches, key=len)
    return name.rpartition(".")[0] or name


def layer_rows(
    calls: list[Call], ruled: dict[str, tuple[nn.Module, Rule]], include: tuple[str, ...]
) -> list[LayerCost]:
    rows: dict[str, LayerCost] = {}
    for call in calls:
        rule = ruled[call.name][1]
        shape = shape_of(call, rule)
        macs = rule.macs(call.module, shape) if counted(rule, include) else 0
        if call.name in rows:
            rows[call.name].macs += macs
            rows[call.name].calls += 1
            continue
        params = rule.params(call.module, shape)
        if not counted(rule, include) and params == 0:
            continue
        rows[call.name] = LayerCost(
            call.name,
            type(call.module).__name__,
            rule.kind,
            shape.in_channels,
            shape.out_channels,
            call.output,
            macs,
            params,
            custom=custom(rule),
        )
    return list(rows.values())


def uncounted_layers(
    model: nn.Module, layer_names: Iterable[str], rules: Callable[[str, nn.Module], Rule | None]
) -> list[str]:
    covered = tuple(layer_names)
    out = []
    for name, module in model.named_modules():
        inside = any(name == c or name.startswith(c + ".") for c in covered if c)
        if not inside and rules(name, module) is None and any(True for _ in module.parameters(recurse=False)):
            out.append(name or type(module).__name__)
    return out


def count(
    model: nn.Module,
    example_input: Any,
    overrides: Overrides | CostFunctions | None = None,
    include: str | Iterable[str] | None = None,
    traversal: Traversal | None = None,
    plugins: Factories | None = None,
    param_overrides: Overrides | None = None,
) -> CostReport:
    """Count MACs and parameters of ``model`` on ``example_input`` (shape-only where possible).

    ``overrides`` prices layers' MACs with your functions ``fn(module, shape) -> cost``, keyed by
    module name, glob over names, class, import path or short ``torch.nn`` name (see
    :mod:`prunekit.graph.overrides`); ``param_overrides`` their parameters, the same way.
    ``include`` adds ``"norm"``, ``"activation"``, ``"pooling"``, ``"upsample"`` (or ``"all"``).
    Blocks come from the traversal plugin that recognises the model (its top-level children otherwise).
    ``plugins`` resolves layer types (default: the process-wide plugin manager; a run passes its own).
    """
    kinds = parse_include(include)
    plugins = resolve(plugins)
    rules = Rules(overrides, plugins, param_overrides)
    ruled = rules.leaves(model)
    recording = record(model, example_input, {name: m for name, (m, _) in ruled.items()})
    rows = layer_rows(recording.calls, ruled, kinds)
    traversal = traversal or traversal_of(model, plugins)
    blocks: dict[str, BlockCost] = {}
    for row in rows:
        b = blocks.setdefault(block_of(row.name, traversal.blocks), BlockCost(""))
        b.macs, b.params, b.layers = b.macs + row.macs, b.params + row.params, b.layers + 1
    first: dict[str, Call] = {}
    for call in recording.calls:
        first.setdefault(call.name, call)
    macs = sum(r.macs for r in rows)
    params = priced_params(model, ((c.module, ruled[n][1], shape_of(c, ruled[n][1])) for n, c in first.items()))
    if not math.isfinite(macs) or not math.isfinite(params):
        raise ConfigError(
            f"the model's cost sums to {macs} MACs and {params} parameters: your cost functions' values are too "
            "large to add up (keep them far below 1e300; a unit such as MMACs helps)"
        )
    return CostReport(
        macs=macs,
        params=params,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        layers=rows,
        blocks=[BlockCost(name, b.macs, b.params, b.layers) for name, b in blocks.items()],
        include=kinds,
        uncounted=uncounted_layers(model, ruled, rules.rule),
        fallback=recording.fallback,
    )
