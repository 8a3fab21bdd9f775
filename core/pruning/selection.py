"""Budgeted selection: which channels go in one pruning step.

Channels are ranked globally by importance (lowest first). A unit — one channel, or what a grouped
layer needs to stay valid (:mod:`prunekit.graph.constraints`), or with ``round_to`` enough of
those to keep the group's count a multiple — is taken when no layer and no
block would lose more than its limit of its *original* parameters, and the group keeps at least
``min_channels``. With ``free_below`` (alignment) a group may also go below one multiple, and
off its multiple where a merged unit would break a limit, but only once no unit that keeps a count
on a multiple is left to take: aligned counts are what runtimes run fast
(:func:`prunekit.cost.alignment`), a count below one multiple rarely runs faster than the
multiple itself — and a budget reachable without alignment is still reached with it. Selection
stops when the step's budget is met, the overall target is reached, or nothing more can be taken.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..cost.cost_model import CostModel, CostTracker
from ..cost.counting import block_of
from ..graph.channel_graph import ChannelGraph, Group
from ..graph.constraints import removal_units


@dataclass(frozen=True)
class Limits:
    layer_percent: float = 100.0
    block_percent: float = 100.0
    min_channels: int = 1
    round_to: int | None = None
    #: counts below one multiple of ``round_to`` are allowed too (any count >= min_channels), taken
    #: after every unit that keeps a multiple: what alignment (``align``) asks of the selection
    free_below: bool = False

    def aligned(self, align: int | None) -> Limits:
        """These limits keeping counts at multiples of ``align`` (or below one multiple, last),
        unless they already name a ``round_to`` or ``align`` is none or 1."""
        if self.round_to is not None or align is None or align <= 1:
            return self
        return dataclasses.replace(self, round_to=align, free_below=True)


@dataclass(frozen=True)
class Budget:
    """Remove ``amount`` of ``kind`` (macs, params, filters, or latency: seconds of the latency
    table) this step, never going below the floors (the overall target)."""

    kind: str
    amount: float
    floor_macs: float = 0.0
    floor_params: float = 0.0
    floor_seconds: float = 0.0  # kind ``latency``: the layers' seconds in the latency table


@dataclass
class Selection:
    removal: dict[int, list[int]]
    macs: float
    params: float
    filters: int = 0
    at_limit: set[str] = field(default_factory=set)
    exhausted: bool = False  # stopped because nothing more could be taken
    seconds: float = 0.0  # the layers' seconds in the latency table after the removal (0 without one)


@dataclass(frozen=True)
class Reference:
    """Parameters of every layer and block in the original model: the base of the limits."""

    layers: dict[str, float]
    blocks: dict[str, float]
    block_of: dict[str, str]

    @classmethod
    def of(cls, graph: ChannelGraph) -> Reference:
        """The reference of a traced (original) model; blocks come from its traversal."""
        base = CostModel(graph).base
        blocks = graph.traversal.blocks
        owner = {name: block_of(name, blocks) for name in base}
        totals: dict[str, float] = defaultdict(float)
        for name, cost in base.items():
            totals[owner[name]] += cost.params
        return cls({n: c.params for n, c in base.items()}, dict(totals), owner)


# The latency estimate's price of one activation element read or written, in MACs. Elementwise
# layers alone suggest ~10–40 (2 CPU cores: ~40 GMAC/s in a wide convolution, ~1 G elements/s in
# BN + ReLU), but thin high-resolution convolutions also run far below peak (1 input channel:
# ~1.4 GMAC/s); 256 is the value that made the estimate rank pruned U-Nets by measured CPU
# latency (benchmarks/prune_speed.py, 64–1024 tried).
ELEMENT_MACS = 256.0
COST_MEASURES = ("macs", "params", "latency")


def per_cost(
    scores: Mapping[int, torch.Tensor], cost: CostModel, measure: str, element_macs: float = ELEMENT_MACS
) -> dict[int, torch.Tensor]:
    """Importance per unit of cost a channel's removal saves.

    Ranking by this ratio is the greedy solution of the knapsack "remove the budget, lose the least
    importance" (resource-aware pruning, e.g. HALP, Shen et al. 2022). ``measure`` is ``macs``,
    ``params`` or ``latency``: the seconds a measured latency table predicts when ``cost`` has
    one (:mod:`prunekit.cost.latency_table`), else a roofline-style estimate, MACs plus
    ``element_macs`` per activation element every layer reads and writes, so that thin
    high-resolution layers — memory-bound — are seen to cost more than their MACs. Channels with
    the same members save the same, so each distinct footprint is costed once.
    """
    if measure == "latency" and cost.latency is not None and cost.latency.stepped:  # rank on the smooth table
        cost = CostModel(cost.graph, cost.requested, dataclasses.replace(cost.latency, stepped=False))
    saved: dict[tuple, float] = {}
    out = {}
    for gid, values in scores.items():
        ratios = values.clone()
        for ch in range(len(values)):
            footprint = tuple(cost.effects.get((gid, ch), ()))
            if footprint not in saved:
                saving = cost.marginal(gid, ch)
                if measure == "latency" and cost.latency is not None:
                    saved[footprint] = saving.seconds * 1e6  # microseconds: the floor below is 1 µs
                elif measure == "latency":
                    saved[footprint] = saving.macs + element_macs * saving.elements
                else:
                    saved[footprint] = float(getattr(saving, measure))
            ratios[ch] = values[ch] / max(saved[footprint], 1.0)
        out[gid] = ratios
    return out


def units(group: Group, scores: torch.Tensor, limits: Limits) -> list[list[int]]:
    """The group's removable channels in removal order, in units: the constraints' units (one
    block from every cell), merged so that with ``round_to`` the group's count stays a multiple."""
    return [unit.channels for unit in tiered_units(group, scores, limits)]


@dataclass
class Unit:
    """Channels one selection takes together: ``parts``, the constraints' units, merged so that
    the group keeps a multiple of ``round_to``. ``tier`` orders units across groups before their
    scores do: 0 keeps the count on a multiple, 1 takes it below one multiple (with
    ``free_below``), 2 off its multiple (a merged unit's parts, when the whole would break a limit)."""

    tier: int
    score: float
    channels: list[int]
    parts: list[list[int]]


def tiered_units(group: Group, scores: torch.Tensor, limits: Limits) -> list[Unit]:
    """:func:`units`, each with its tier and the constraints' units it merges."""
    size = limits.round_to or 1
    floor = limits.min_channels if limits.free_below else max(limits.min_channels, size)
    out: list[Unit] = []
    parts: list[list[int]] = []
    remaining = group.channels
    for unit in removal_units(group, lambda c: float(scores[c])):
        parts.append(list(unit))
        left = remaining - sum(map(len, parts))
        below = limits.free_below and left < size
        if left % size and not below:
            continue
        if left < floor:
            break
        channels = [c for part in parts for c in part]
        out.append(Unit(int(below), float(scores[channels].mean()), channels, parts))
        remaining, parts = left, []
    for part in parts if limits.free_below else ():  # counts no merge reaches (a grouped layer's units): last
        if remaining - len(part) < floor:
            break
        out.append(Unit(2, float(scores[part].mean()), part, [part]))
        remaining -= len(part)
    return out


def select(
    graph: ChannelGraph,
    scores: Mapping[int, torch.Tensor],
    cost: CostModel,
    reference: Reference,
    limits: Limits,
    budget: Budget,
) -> Selection:
    tracker = CostTracker(cost)
    blocks_now: dict[str, float] = defaultdict(float)
    for layer, c in tracker.layer.items():
        blocks_now[reference.block_of.get(layer, layer)] += c.params
    queue: list = []
    pending = {g.id: tiered_units(g, scores[g.id], limits) for g in graph.groups if g.id in scores}
    for gid in pending:
        _push(queue, gid, pending)
    chosen: dict[int, list[int]] = defaultdict(list)
    at_limit: set[str] = set()
    start_macs, start_params, filters = tracker.macs, tracker.params, 0
    start_seconds = tracker.seconds
    while queue:
        if (
            tracker.macs <= budget.floor_macs
            or tracker.params <= budget.floor_params
            or (budget.floor_seconds and tracker.seconds <= budget.floor_seconds)
        ):
            break
        removed = {
            "macs": start_macs - tracker.macs,
            "params": start_params - tracker.params,
            "filters": filters,
            "latency": start_seconds - tracker.seconds,
        }
        if removed[budget.kind] >= budget.amount:
            break
        *_, gid, unit = heapq.heappop(queue)
        preview = tracker.preview(gid, unit.channels)
        blocked = _over_limit(preview, tracker, blocks_now, reference, limits)
        if blocked:
            at_limit |= blocked  # the group's later units would remove even more: drop them
            if limits.free_below and len(unit.parts) > 1:  # aligned counts, unless the budget needs less
                rest = [unit.parts, *(u.parts for u in pending[gid])]
                s = scores[gid]
                pending[gid] = [Unit(2, float(s[p].mean()), p, [p]) for parts in rest for p in parts]
                _push(queue, gid, pending)
            continue
        for layer, (_, c) in preview.items():
            blocks_now[reference.block_of.get(layer, layer)] += c.params - tracker.layer[layer].params
        tracker.commit(preview)
        chosen[gid] += unit.channels
        filters += len(unit.channels)
        _push(queue, gid, pending)
    return Selection(
        {g: sorted(c) for g, c in chosen.items() if c},
        tracker.macs,
        tracker.params,
        filters,
        at_limit,
        exhausted=not queue,
        seconds=tracker.seconds,
    )


def _push(queue: list, gid: int, pending: dict[int, list[Unit]]) -> None:
    """Queue the group's next unit: units of one group go in order, the groups compete — by tier,
    then by score."""
    if pending[gid]:
        unit = pending[gid].pop(0)
        heapq.heappush(queue, (unit.tier, unit.score, gid, unit))


def _over_limit(
    preview: dict, tracker: CostTracker, blocks_now: dict[str, float], reference: Reference, limits: Limits
) -> set[str]:
    """Layers and blocks that would lose more than their limit of their original parameters."""
    over = set()
    block_change: dict[str, int] = defaultdict(int)
    for layer, (_, c) in preview.items():
        block_change[reference.block_of.get(layer, layer)] += c.params - tracker.layer[layer].params
        original = reference.layers.get(layer, 0)
        if original and 100.0 * (original - c.params) / original > limits.layer_percent + 1e-9:
            over.add(layer)
    for block, change in block_change.items():
        original = reference.blocks.get(block, 0)
        if (
            change
            and original
            and 100.0 * (original - blocks_now[block] - change) / original > limits.block_percent + 1e-9
        ):
            over.add(block)
    return over
