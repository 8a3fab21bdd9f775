"""Predicting cost after removing channels, from the layer types' formulas (no model run).

Removing a group channel shrinks every member layer: a producer's outputs, a consumer's inputs
(as many as the channel occupies there: twice after ``cat([x, x])``, H×W times after a flatten),
both sides of a norm. Each affected layer is re-evaluated with its new channel counts, so the
prediction is exact — cross terms included when a layer loses inputs and outputs at once.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..graph.channel_graph import ChannelGraph, LayerNode
from ..graph.rules import channels, counted
from ..layer_type import LayerShape
from .counting import parse_include
from .latency_table import LatencyTable


@dataclass(frozen=True)
class Cost:
    macs: float  # in the user's units where cost functions price a layer
    params: float
    elements: int = 0  # activation elements read and written, all calls: the memory traffic
    seconds: float = 0.0  # the latency table's time of the layers (0 without a table)


def _shrunk(size: tuple[int, ...], dim: int, by: int) -> tuple[int, ...]:
    if not by:
        return size
    dim = dim % len(size)
    return (*size[:dim], size[dim] - by, *size[dim + 1 :])


class CostModel:
    """MACs and parameters of a traced model and of any removal of its group channels."""

    def __init__(
        self, graph: ChannelGraph, include: str | Iterable[str] | None = None, latency: LatencyTable | None = None
    ) -> None:
        """``include``: the optional cost kinds counted as MACs, as in :func:`prunekit.count`;
        ``latency``: a measured table of the model's layers (built on the original model), which
        makes every cost carry the layers' predicted seconds."""
        self.graph = graph
        self.requested = include
        self.include = parse_include(include)
        self.latency = latency
        self.effects: dict[tuple[int, int], list[tuple[str, str, int | None, int]]] = {}
        for group in graph.groups:
            counts: dict[int, Counter] = defaultdict(Counter)
            for m in group.members:
                for ch in m.channel:
                    counts[ch][(m.layer, m.role, m.call)] += 1
            for ch, counter in counts.items():
                self.effects[(group.id, ch)] = [(*key, n) for key, n in counter.items()]
        self.base = {name: self.cost_of(name, {}) for name in (*graph.layers, *graph.tensors)}
        self.macs = sum(c.macs for c in self.base.values())
        self.params = graph.params
        self.elements = sum(c.elements for c in self.base.values())
        self.seconds = sum(c.seconds for c in self.base.values())

    def cost_of(self, name: str, shrink: dict[int | None, list[int]]) -> Cost:
        """The cost of layer ``name``, or of a per-channel tensor outside layers (a layer scale:
        parameters only), after losing ``shrink`` channels (see :meth:`layer_cost`)."""
        if name in self.graph.tensors:
            return Cost(0, self.graph.tensors[name] - sum(lost for _, lost in shrink.values()))
        return self.layer_cost(self.graph.layers[name], shrink)

    def layer_cost(self, node: LayerNode, shrink: dict[int | None, list[int]]) -> Cost:
        """The layer's MACs (all calls) and parameters with fewer channels: ``shrink[call]`` is
        ``[inputs, outputs]`` lost at that call, ``shrink[None]`` at every call."""
        rule = node.rule
        macs: float = 0
        elements, params, seconds = 0, None, 0.0
        every = shrink.get(None, (0, 0))
        for i, call in enumerate(node.calls):
            at = shrink.get(i, (0, 0))
            d_in, d_out = every[0] + at[0], every[1] + at[1]
            in_dim, out_dim = node.dims(i)
            shape = LayerShape.of(
                node.module,
                _shrunk(call.input, in_dim, d_in),
                _shrunk(call.output, out_dim, d_out),
                channels(call.input, in_dim) - d_in,
                channels(call.output, out_dim) - d_out,
            )
            if counted(rule, self.include):
                macs += rule.macs(node.module, shape)
            elements += math.prod(shape.input) + math.prod(shape.output)
            if self.latency is not None:
                seconds += self.latency.layer_seconds(node, i, shape.in_channels, shape.out_channels)
            if params is None:
                params = rule.params(node.module, shape)
        return Cost(macs, params or 0, elements, seconds)

    def deltas(self, removal: Mapping[int, Iterable[int]]) -> dict[str, dict[int | None, list[int]]]:
        """Channels each layer loses: name -> {call (None: every call) -> [inputs, outputs]}."""
        deltas: dict[str, dict[int | None, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for gid, chans in removal.items():
            for ch in set(chans):
                for layer, role, call, n in self.effects.get((gid, ch), ()):
                    d_in, d_out = self.shrinkage(layer, role, n)
                    deltas[layer][call][0] += d_in
                    deltas[layer][call][1] += d_out
        return deltas

    def shrinkage(self, layer: str, role: str, n: int) -> tuple[int, int]:
        """(inputs, outputs) a layer loses when ``n`` of its channels in ``role`` go."""
        if role == "in":
            return n, 0
        if role == "out":
            return 0, n
        if role == "dw":  # n output rows of one input channel
            node = self.graph.layers[layer]
            return n // max(1, node.channels("out") // node.channels("in")), n
        return n, n  # norm, pass, tensor: the same channels in and out

    def predict(self, removal: Mapping[int, Iterable[int]]) -> Cost:
        """Total MACs, parameters and activation elements after removing ``{group id: channels}``."""
        macs, params, elements, seconds = self.macs, self.params, self.elements, self.seconds
        for layer, shrink in self.deltas(removal).items():
            if layer in self.base:
                before, after = self.base[layer], self.cost_of(layer, shrink)
                macs -= before.macs - after.macs
                params -= before.params - after.params
                elements -= before.elements - after.elements
                seconds -= before.seconds - after.seconds
        return Cost(macs, params, elements, seconds)

    def marginal(self, group: int, channel: int) -> Cost:
        """What removing this one channel saves."""
        after = self.predict({group: [channel]})
        return Cost(
            self.macs - after.macs,
            self.params - after.params,
            self.elements - after.elements,
            self.seconds - after.seconds,
        )


class CostTracker:
    """Running totals while channels are removed one unit at a time (selection)."""

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self.shrink: dict[str, dict[int | None, list[int]]] = {}
        self.layer: dict[str, Cost] = dict(model.base)
        self.macs: float = model.macs
        self.params: float = model.params
        self.seconds = model.seconds

    def preview(self, group: int, channels: Iterable[int]) -> dict[str, tuple[dict, Cost]]:
        """New per-layer shrinkage and cost if ``channels`` of ``group`` went too."""
        out = {}
        for layer, shrink in self.model.deltas({group: channels}).items():
            if layer not in self.model.base:
                continue
            merged = {call: list(v) for call, v in self.shrink.get(layer, {}).items()}
            for call, (d_in, d_out) in shrink.items():
                now = merged.setdefault(call, [0, 0])
                now[0] += d_in
                now[1] += d_out
            out[layer] = (merged, self.model.cost_of(layer, merged))
        return out

    def commit(self, preview: dict[str, tuple[dict, Cost]]) -> None:
        for layer, (merged, cost) in preview.items():
            self.macs += cost.macs - self.layer[layer].macs
            self.params += cost.params - self.layer[layer].params
            self.seconds += cost.seconds - self.layer[layer].seconds
            self.shrink[layer], self.layer[layer] = merged, cost
