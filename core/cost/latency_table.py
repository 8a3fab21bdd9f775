"""A measured latency model: every layer of a model timed on its device, in the runtime the model is
deployed with, at a few channel counts.

Each layer the pruning can shrink runs alone, at its recorded input size, at fractions of its
channels (inputs × outputs for a producer, the channel count for a channel-wise layer) in
multiples of the device's alignment (:func:`alignment`: output counts in between run little
faster than the next multiple, so pruning keeps to multiples when it budgets latency), and the
seconds between grid points are interpolated (bilinearly; linearly beyond the grid). Input counts
one past a multiple — a concatenation of aligned pieces and an odd one, such as an image channel —
are measured too: they take another, slower kernel path than the next multiple. A layer's grid points
are measured in turns, which keeps its shape over counts true; its level is set by
:func:`calibrate_table`, which measures every layer at full width in the same rounds as whole forwards
of the full model and of a thinned copy. Those two forwards map the layers' sum to a network's
time (the ops between layers — concatenation, residual adds, functional interpolation,
dispatch — and layers running differently alone than inside the network). Grids are cached on
disk per device, runtime, torch version and thread count, one entry per layer signature and input
size, so a second run measures only the calibration rounds.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cache import cache_dir
from ..eager import alignment
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph, LayerNode
from ..graph.rules import channels, layer_type_of
from ..layer_type import Flow, LayerType
from ..modes import eval_mode
from ..seam import Runtime
from .latency import prepared, time_calls
from .latency_cache import cache_file, device_name, entry_problem, read_cache, write_cache

#: channel counts measured, as fractions of the original layer's
GRID = (0.125, 0.25, 0.5, 1.0)


@dataclass
class LayerTimes:
    """Seconds of one layer call at input counts ``ins`` × output counts ``outs`` (one list each;
    a channel-wise layer has ``ins == outs`` and one row per count on the diagonal). A producer
    whose inputs can shrink is also measured at ``off_ins``, input counts one step past an
    alignment multiple (``off_seconds``, one row per count over ``outs``): such inputs — a
    concatenation of aligned pieces and one odd channel — take another, slower kernel path, priced
    as the aligned curve times that path's measured ratio to it (interpolated between the off
    counts, constant beyond them)."""

    ins: list[int]
    outs: list[int]
    seconds: list[list[float]]
    diagonal: bool = False
    off_ins: list[int] = field(default_factory=list)
    off_seconds: list[list[float]] = field(default_factory=list)

    def at(self, c_in: int, c_out: int, off: bool = False) -> float:
        if self.diagonal:
            return _interpolate(self.ins, [row[0] for row in self.seconds], c_in)
        aligned = self._aligned(c_in, c_out)
        if not (off and self.off_ins):
            return aligned
        ratios = [
            _interpolate(self.outs, row, c_out) / max(self._aligned(c, c_out), 1e-12)
            for c, row in zip(self.off_ins, self.off_seconds)
        ]
        return aligned * _interpolate(self.off_ins, ratios, min(max(c_in, self.off_ins[0]), self.off_ins[-1]))

    def _aligned(self, c_in: int, c_out: int) -> float:
        return _interpolate(self.ins, [_interpolate(self.outs, row, c_out) for row in self.seconds], c_in)


def _interpolate(xs: list[int], ys: list[float], x: float) -> float:
    """Piecewise linear through (xs, ys), extended linearly beyond both ends; never negative."""
    if len(xs) == 1:
        return ys[0]
    i = max(0, min(len(xs) - 2, next((k for k in range(len(xs) - 1) if x <= xs[k + 1]), len(xs) - 2)))
    x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


@dataclass
class LatencyTable:
    """Measured seconds per layer call of one model (by layer name, at absolute channel counts of
    the model it was built on), and the measured overhead of the whole forward."""

    entries: dict[tuple[str, int], LayerTimes]
    device: str
    #: (layer sum, measured forward) of the full model and of a thinned copy: whole-network
    #: predictions go through both points, linear in the layer sum
    calibration: list[tuple[float, float]] = field(default_factory=list)
    align: int = 1  # the channel multiple the grid is measured at
    build_seconds: float = 0.0
    measured: int = 0  # entries measured now, not found in the cache

    dtype: torch.dtype = torch.float32  # what the grid was measured in
    runtime: str = "eager"  # where whole forwards are measured (and layers, where it times them)
    #: layer calls the runtime could not run alone, timed eagerly instead (never cached)
    alone: set[tuple[str, int]] = field(default_factory=set)

    #: output counts above one multiple of ``align`` cost as the next multiple does, input counts
    #: off the grid and off a multiple the slow path's price (what a run takes); False: the
    #: aligned curve interpolated smoothly (what ranking channels one by one needs)
    stepped: bool = True

    def layer_seconds(self, node: LayerNode, call: int, c_in: int, c_out: int) -> float:
        entry = self.entries.get((node.name, call))
        if entry is None:
            return 0.0
        if not self.stepped:
            return entry.at(c_in, c_out)
        off = entry.off_ins and c_in > self.align and c_in % self.align and c_in not in entry.ins
        c_in = self._stair(c_in, entry.off_ins) if off else self._step(c_in, entry.ins)
        return entry.at(c_in, self._step(c_out, entry.outs), bool(off))

    def _step(self, count: int, grid: list[int]) -> int:
        """A count as a run takes it: measured as it is on the grid and below one multiple, else
        at the next multiple (never past the full count)."""
        if count in grid or count <= self.align:
            return count
        return min(-(-count // self.align) * self.align, grid[-1])

    def _stair(self, count: int, off_ins: list[int]) -> int:
        """An input count off the multiples runs as the measured count just past the multiple below
        it does, where there is one (on 2 cores a 3×3 convolution took the same time for 17–31
        inputs, and again for 33–40)."""
        below = [c for c in off_ins if c <= count < c + self.align]
        return below[-1] if below else count

    def network_seconds(self, layer_seconds: float) -> float:
        """A whole forward's predicted seconds, for a model whose layers sum to ``layer_seconds``:
        through the calibration points, so the ops between layers and the difference between a
        layer timed alone and inside the network are both accounted for."""
        slope, intercept = self._line()
        return max(0.0, intercept + slope * layer_seconds)

    def layer_seconds_at(self, network_seconds: float) -> float:
        """The layer sum at which a whole forward is predicted to take ``network_seconds``."""
        slope, intercept = self._line()
        return (network_seconds - intercept) / slope

    def _line(self) -> tuple[float, float]:
        """(slope, intercept) of the network's seconds in the layer sum: through both calibration
        points; through the full model's and zero where they make no sense (a thinned copy
        measured no faster, or a negative overhead — a machine too busy to calibrate on); the
        layer sum itself without any."""
        points = sorted(self.calibration)
        if not points:
            return 1.0, 0.0
        (x0, y0), (x1, y1) = points[0], points[-1]
        if x1 - x0 > 1e-9 and y1 > y0 and y0 * x1 >= y1 * x0:  # rising, with an overhead >= 0
            slope = (y1 - y0) / (x1 - x0)
            return slope, y0 - slope * x0
        return y1 / x1 if x1 > 0 else 1.0, 0.0


def varying(graph: ChannelGraph) -> dict[str, tuple[bool, bool]]:
    """For every layer: can pruning shrink its inputs, its outputs?"""
    found: dict[str, tuple[bool, bool]] = {}
    for group in graph.groups:
        if not group.prunable:
            continue
        for m in group.members:
            was = found.get(m.layer, (False, False))
            both = m.role in ("norm", "pass", "dw")
            found[m.layer] = (was[0] or m.role == "in" or both, was[1] or m.role == "out" or both)
    return found


def _counts(full: int, unit: int, base: int) -> list[int]:
    """Grid counts of a dim of ``full`` channels that goes in multiples of ``unit`` — and below one
    unit in multiples of ``base`` (the layer's own granularity), where a latency budget lets it."""
    aligned = {min(full, max(unit, round(f * full / unit) * unit)) for f in GRID if f * full >= unit / 2}
    below = {unit // 2 // base * base} if base <= unit // 2 < full else set()
    return sorted(aligned | below | {full})


def _keep(count: int, full: int, groups: int) -> torch.Tensor:
    """The first ``count`` channels, as many from every one of ``groups`` equal parts."""
    per, k = full // groups, count // groups
    return torch.tensor([g * per + j for g in range(groups) for j in range(k)], dtype=torch.long)


class _Layer:
    """One call of one layer, to be timed at other channel counts."""

    def __init__(self, node: LayerNode, call: int, shrinks: tuple[bool, bool], align: int) -> None:
        self.node, self.call = node, call
        self.rule: LayerType = node.layer_type
        self.flow = self.rule.flow(node.module)
        record = node.calls[call]
        self.in_dim, self.out_dim = node.dims(call)
        self.input, self.full_in = record.input, channels(record.input, self.in_dim)
        self.full_out = channels(record.output, self.out_dim)
        self.diagonal = self.flow in (Flow.CHANNELWISE, Flow.DEPTHWISE, Flow.OPAQUE)
        self.groups = groups = self.rule.groups(node.module) if self.flow is Flow.GROUPED else 1
        base_in = groups * (self.rule.block(node.module) if self.flow is Flow.CHANNELWISE else 1)
        varies_in = shrinks[0] or (self.diagonal and shrinks[1])
        unit_in = math.lcm(base_in, align)
        self.ins = _counts(self.full_in, unit_in, base_in) if varies_in else [self.full_in]
        odd = [c + base_in for c in self.ins if c % unit_in == 0 and c + base_in < self.full_in]
        self.off_ins = odd if varies_in and not self.diagonal else []
        varies_out = shrinks[1] and not self.diagonal
        self.outs = _counts(self.full_out, math.lcm(groups, align), groups) if varies_out else [self.full_out]

    def grid(self) -> dict[str, Any]:
        """The counts :meth:`measure` times this layer at, as its :class:`LayerTimes` holds them."""
        return {"ins": self.ins, "outs": self.ins if self.diagonal else self.outs, "diagonal": self.diagonal,
                "off_ins": self.off_ins}  # fmt: skip

    def signature(self, dtype: torch.dtype) -> str:
        module = self.node.module
        return (
            f"{type(module).__module__}.{type(module).__qualname__}({module.extra_repr()}) input {self.input} "
            f"dims {self.in_dim},{self.out_dim} {dtype} grid {self.ins}+{self.off_ins}x{self.outs}"
        )

    def variant(self, c_in: int, c_out: int, device: torch.device, dtype: torch.dtype) -> nn.Module:
        module = copy.deepcopy(self.node.module).to(device=device, dtype=dtype).eval()
        if self.flow in (Flow.PRODUCER, Flow.GROUPED):
            if c_out != self.full_out:
                self.rule.prune_out(module, _keep(c_out, self.full_out, self.groups))
            if c_in != self.full_in:
                self.rule.prune_in(module, _keep(c_in, self.full_in, self.groups))
        elif c_in != self.full_in and next(module.parameters(recurse=False), None) is not None:
            per = self.full_out // self.full_in if self.flow is Flow.DEPTHWISE else 1
            kept = [c * per + r for c in range(c_in) for r in range(per)]
            self.rule.prune_out(module, torch.tensor(kept, dtype=torch.long))
        return module

    def example(self, c_in: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        size = list(self.input)
        size[self.in_dim % len(size)] = c_in
        return torch.randn(size, device=device, dtype=dtype)

    def measure(self, device: torch.device, dtype: torch.dtype, repeats: int, runtime: Runtime | None) -> LayerTimes:
        """Every count of the grid, the variants taking turns (as :func:`measure` does), so that
        the machine's drift shifts them alike and the entry's shape over counts stays true."""
        outs = (lambda c_in: [c_in * self.full_out // self.full_in]) if self.diagonal else (lambda c_in: self.outs)
        cells = [(c_in, c_out) for c_in in self.ins + self.off_ins for c_out in outs(c_in)]
        inputs = {c_in: self.example(c_in, device, dtype) for c_in in self.ins + self.off_ins}
        variants = [(self.variant(c_in, c_out, device, dtype), inputs[c_in], runtime) for c_in, c_out in cells]
        seconds = iter(_in_turns(variants, repeats))
        rows = [[next(seconds) for _ in outs(c_in)] for c_in in self.ins + self.off_ins]
        split = len(self.ins)
        return LayerTimes(
            self.ins, self.ins if self.diagonal else self.outs, rows[:split], self.diagonal, self.off_ins, rows[split:]
        )


def _in_turns(variants: Sequence[tuple[nn.Module, torch.Tensor, Runtime | None]], repeats: int) -> list[float]:
    """Median seconds of each (module, input, runtime), in eval mode, all taking turns in every round."""
    with ExitStack() as modes:
        for module, _, _ in variants:
            modes.enter_context(eval_mode(module))
        calls = [prepared(runtime, m, x) for m, x, runtime in variants]
        rounds = time_calls(calls, variants[0][1].device, repeats)
    return [statistics.median(t) for t in rounds]


def layer_runtime(runtime: Runtime | None) -> Runtime | None:
    """The runtime single layers are timed in: ``runtime`` where it times layers, else eager."""
    return runtime if runtime is not None and runtime.times_layers else None


def runtime_key(runtime: Runtime | None) -> str:
    """The runtime, as a latency table and its cache name it: its name and version."""
    return "eager" if runtime is None else f"{runtime.name} {runtime.version()}"


def build_table(
    graph: ChannelGraph,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    cache: Path | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    align: int | None = None,
    runtime: Runtime | None = None,
) -> LatencyTable:
    """Measure (or find in the cache) every layer call of ``graph`` that pruning can shrink, at
    channel counts in multiples of ``align`` (default: the runtime's alignment on the device), in
    ``runtime`` where it times single layers (else in eager PyTorch)."""
    began = time.perf_counter()
    shrinks = varying(graph)
    align = align or (runtime.alignment(device) if runtime is not None else alignment(device))
    timer = layer_runtime(runtime)
    calls = [
        _Layer(node, i, shrinks.get(name, (False, False)), align)
        for name, node in graph.layers.items()
        if layer_type_of(node.rule) is not None
        for i in range(len(node.calls))
    ]
    path = cache_file(device, cache or cache_dir(), runtime_key(timer))
    stored = read_cache(path)
    entries, measured, untrusted, refused = {}, 0, {}, {}
    for layer in progress(calls) if progress else calls:
        key, call = layer.signature(dtype), (layer.node.name, layer.call)
        why = entry_problem(stored[key], layer.grid()) if key in stored else None
        if why is not None:
            untrusted[layer.node.name] = why
        if key not in stored or why is not None:
            measured += 1
            try:
                stored[key] = layer.measure(device, dtype, repeats, timer).__dict__
            except ConfigError as exc:  # the runtime cannot run this layer alone: timed eagerly
                refused[call] = str(exc)
                entries[call] = layer.measure(device, dtype, repeats, None)
                continue
        entries[call] = LayerTimes(**stored[key])
    if untrusted:
        name, why = next(iter(untrusted.items()))
        warnings.warn(
            f"the latency table cache {path}: {len(untrusted)} cached layer times could not be trusted and "
            f"were measured again (layer {name!r}: {why})",
            RuntimeWarning,
            stacklevel=2,
        )
    if refused:
        (name, _), why = next(iter(refused.items()))
        warnings.warn(
            f"{len(refused)} layers are timed in eager PyTorch, which {runtime_key(timer)} cannot run alone "
            f"(layer {name!r}: {why})",
            RuntimeWarning,
            stacklevel=2,
        )
    if measured > len(refused):
        write_cache(path, stored, device, runtime_key(timer))
    seconds = time.perf_counter() - began
    return LatencyTable(
        entries, device_name(device), [], align, seconds, measured, dtype, runtime_key(runtime), set(refused)
    )


def layer_sum(table: LatencyTable, graph: ChannelGraph) -> float:
    """The table's seconds for every layer call of ``graph`` at its current channel counts."""
    total = 0.0
    for node in graph.layers.values():
        for i, call in enumerate(node.calls):
            in_dim, out_dim = node.dims(i)
            total += table.layer_seconds(node, i, channels(call.input, in_dim), channels(call.output, out_dim))
    return total


def calibrate_table(
    table: LatencyTable,
    example: torch.Tensor,
    full: tuple[nn.Module, ChannelGraph],
    thinned: tuple[nn.Module, ChannelGraph],
    repeats: int = 10,
    also: Sequence[nn.Module] = (),
    runtime: Runtime | None = None,
) -> list[float]:
    """Measure, all in turns on ``example``: whole forwards of the full model and of a thinned copy
    (each with its graph) and ``also``'s models in ``runtime``, and every layer of the table at its
    full width (in the runtime the table times layers in). The layers' entries are scaled to their
    full-width time of these rounds — entries measured at other moments (another run, a busier
    minute: whole layers measured up to 2× apart) then share one level — and the two forwards
    calibrate the layers' sum. Returns ``also``'s seconds."""
    layers = [_Layer(full[1].layers[name], call, (False, False), table.align) for name, call in table.entries]
    inputs: dict[tuple[int, ...], torch.Tensor] = {}  # one per input size: about one forward's activations
    for layer in layers:
        if tuple(layer.input) not in inputs:
            inputs[tuple(layer.input)] = layer.example(layer.full_in, example.device, table.dtype)
    widths = [
        (layer.variant(layer.full_in, layer.full_out, example.device, table.dtype), inputs[tuple(layer.input)])
        for layer in layers
    ]
    wholes = [(m, example, runtime) for m in (full[0], thinned[0], *also)]
    timers = [None if (layer.node.name, layer.call) in table.alone else layer_runtime(runtime) for layer in layers]
    seconds = _in_turns(wholes + [(m, x, timer) for (m, x), timer in zip(widths, timers)], repeats)
    for layer, level in zip(layers, seconds[len(wholes) :]):
        _scale(table.entries[(layer.node.name, layer.call)], level, layer.full_in, layer.full_out)
    table.calibration = [(layer_sum(table, g), s) for (_, g), s in zip((full, thinned), seconds)]
    return seconds[2 : len(wholes)]


def _scale(entry: LayerTimes, level: float, c_in: int, c_out: int) -> None:
    """Scale ``entry`` so that it takes ``level`` seconds at ``c_in`` × ``c_out``."""
    now = entry.at(c_in, c_out)
    if now > 0 and level > 0:
        entry.seconds = [[t * level / now for t in row] for row in entry.seconds]
        entry.off_seconds = [[t * level / now for t in row] for row in entry.off_seconds]
