"""Budgeted selection: which channels go in one pruning step.

Channels are ranked globally by importance (lowest first). A unit — one channel, or what a grouped
layer needs to stay valid (:mod:`prunekit.graph.constraints`), or with ``round_to`` enough of
those to keep the group's count a multiple — is taken when no layer and no
block would lose more than its limit of its *original* parameters, and the group keeps at least
``min_channels``. With ``free_below`` (alignment) a group may also leave its multiple for one of
half of it, then go below one multiple channel by channel (:class:`Ladder`), but only once no
unit that keeps the larger multiple is left to take anywhere: aligned counts are what runtimes
run fast (:func:`prunekit.cost.alignment`). Selection stops when the step's budget is met, the
overall target is reached, or nothing more can be taken.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import operator
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..cost.cost_model import CostModel, CostTracker
from ..cost.counting import block_of
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph, Group
from ..graph.constraints import removal_units


@dataclass(frozen=True)
class Limits:
    """What a selection may take: at most ``layer_percent`` of any layer's and ``block_percent``
    of any block's original parameters, leaving every group ``min_channels``, its count a multiple
    of ``round_to`` where given."""

    layer_percent: float = 100.0
    block_percent: float = 100.0
    min_channels: int = 1
    round_to: int | None = None
    #: counts below one multiple of ``round_to`` are allowed too (any count >= min_channels), taken
    #: after every unit that keeps a multiple: what alignment (``align``) asks of the selection
    free_below: bool = False

    def __post_init__(self) -> None:
        for name in ("layer_percent", "block_percent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise ConfigError(f"Limits: {name} {value!r} is out of range; it must be a number from 0 to 100")
        for name, value in (
            ("min_channels", self.min_channels),
            ("round_to", 1 if self.round_to is None else self.round_to),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Limits: {name} {value!r} is out of range; it must be a whole number >= 1")

    def aligned(self, align: int | None) -> Limits:
        """These limits keeping counts at multiples of ``align`` (or below one multiple, last),
        unless they already name a ``round_to`` or ``align`` is none or 1."""
        if self.round_to is not None or align is None or align <= 1:
            return self
        return dataclasses.replace(self, round_to=align, free_below=True)


@dataclass(frozen=True)
class StepBudget:
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


#: The latency estimate's price of one activation element read or written, in MACs: memory-bound
#: work — element-wise layers, and thin high-resolution convolutions that run far below the
#: arithmetic peak — costs more time per MAC than a wide convolution. The value is the one that
#: ranked pruned U-Nets by their measured latency (docs/benchmarks.md, "Speed of the engine").
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
    """Channels one selection takes together: ``parts``, the constraints' units, merged so that the
    group's count stays a multiple of its ladder's rung ``tier`` (see :class:`Ladder`)."""

    tier: int
    score: float
    channels: list[int]
    parts: list[list[int]]


class Ladder:
    """A group's removable channels, in removal order, handed out in units that keep its count a
    multiple of ``round_to``. With ``free_below`` (alignment) two rungs follow, each taken only where
    the one above has nothing left (a limit refused its merged unit, say): units that keep half the
    multiple — never below one multiple —, then single channels below one multiple. The rung a unit
    keeps is its tier: the selection takes every unit of one tier, in every group, before any of
    the next. Counts off the blocks runtimes compute in run slowly (62 channels ran at half the
    speed of 64 in ONNX Runtime, 56 and 72 about as fast as 64 and 80), and a count below one
    multiple rarely runs faster than the multiple itself (ONNX Runtime pads it). A group whose
    units never leave its count on a multiple (a grouped layer's) goes unit by unit on the last rung."""

    def __init__(self, group: Group, scores: torch.Tensor, limits: Limits) -> None:
        self.size = limits.round_to or 1
        self.rungs = [self.size]
        if limits.free_below and self.size > 1:
            self.rungs += [self.size // 2, 1] if self.size >= 4 else [1]
        self.floor = limits.min_channels if limits.free_below else max(limits.min_channels, self.size)
        self.parts = [list(unit) for unit in removal_units(group, lambda c: float(scores[c]))]
        self.count, self.scores, self.tier = group.channels, scores, 0
        counts = itertools.accumulate((len(p) for p in self.parts), operator.sub, initial=self.count)
        finest = self.rungs[-2] if len(self.rungs) > 1 else 0  # the finest rung that keeps one multiple
        self.anywhere = bool(finest) and not any(c % finest == 0 and c >= self.size for c in list(counts)[1:])

    def _keeps(self, rung: int, left: int) -> bool:
        """Does a count of ``left`` keep ``rung``?"""
        if left % rung:
            return False
        if rung == self.size:
            return True
        if rung == 1:  # below one multiple
            return left < self.size or self.anywhere
        return left >= self.size  # half a multiple, never below one

    def next(self) -> Unit | None:
        """The next unit on the highest rung that has one, or ``None`` when nothing is left."""
        while self.tier < len(self.rungs):
            taken, left = [], self.count
            for part in self.parts:
                taken.append(part)
                left -= len(part)
                if left < self.floor:
                    break
                if self._keeps(self.rungs[self.tier], left):
                    channels = [c for p in taken for c in p]
                    return Unit(self.tier, float(self.scores[channels].mean()), channels, taken)
            self.tier += 1
        return None

    def take(self, unit: Unit) -> None:
        self.parts, self.count = self.parts[len(unit.parts) :], self.count - len(unit.channels)

    def refuse(self, unit: Unit) -> bool:
        """``unit`` would break a limit: the group goes on a rung lower, in smaller units (True),
        or ends (False: a single part is the least it can take, and later ones remove more)."""
        self.tier += 1
        return len(unit.parts) > 1


def tiered_units(group: Group, scores: torch.Tensor, limits: Limits) -> list[Unit]:
    """Every unit of the group's :class:`Ladder`, in order, as if none broke a limit."""
    ladder, out = Ladder(group, scores, limits), []
    while (unit := ladder.next()) is not None:
        ladder.take(unit)
        out.append(unit)
    return out


def select(
    graph: ChannelGraph,
    scores: Mapping[int, torch.Tensor],
    cost: CostModel,
    reference: Reference,
    limits: Limits,
    budget: StepBudget,
) -> Selection:
    tracker = CostTracker(cost)
    blocks_now: dict[str, float] = defaultdict(float)
    for layer, c in tracker.layer.items():
        blocks_now[reference.block_of.get(layer, layer)] += c.params
    queue: list = []
    ladders = {g.id: Ladder(g, scores[g.id], limits) for g in graph.groups if g.id in scores}
    for gid, ladder in ladders.items():
        _push(queue, gid, ladder)
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
            at_limit |= blocked
            if ladders[gid].refuse(unit):
                _push(queue, gid, ladders[gid])
            continue
        for layer, (_, c) in preview.items():
            blocks_now[reference.block_of.get(layer, layer)] += c.params - tracker.layer[layer].params
        tracker.commit(preview)
        ladders[gid].take(unit)
        chosen[gid] += unit.channels
        filters += len(unit.channels)
        _push(queue, gid, ladders[gid])
    return Selection(
        {g: sorted(c) for g, c in chosen.items() if c},
        tracker.macs,
        tracker.params,
        filters,
        at_limit,
        exhausted=not queue,
        seconds=tracker.seconds,
    )


def _push(queue: list, gid: int, ladder: Ladder) -> None:
    """Queue the group's next unit: units of one group go in order, the groups compete — by tier,
    then by score."""
    unit = ladder.next()
    if unit is not None:
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
