"""The latency budget: the run's target in measured time, a latency table of the teacher's
layers to select by, and the measurement after every step that decides when the run is done."""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..cost.latency import measure
from ..cost.latency_table import LatencyTable, alignment, build_table, calibrate
from ..graph.channel_graph import ChannelGraph
from ..pruning.selection import Budget, Limits, Selection, units
from ..pruning.surgery import remove
from ..training import distributed
from .budget import target_speedup
from .config import PruningConfig


@dataclass
class LatencyBudget:
    """``table`` of the teacher's layers on the run's device; ``example`` a batch of one there;
    ``repeats`` forwards per measurement."""

    table: LatencyTable
    example: torch.Tensor
    repeats: int

    def measured(self, teacher: nn.Module, student: nn.Module) -> tuple[float, float]:
        """(student seconds, speed-up over the teacher), measured in turns with the teacher — by
        rank 0 alone under torchrun, for every rank, so that all stop together."""
        result = None
        if distributed.is_main():
            base, now = measure([teacher, student], self.example, self.repeats)
            result = (now, base / now)
        return distributed.broadcast(result)

    def checked(
        self,
        cfg: PruningConfig,
        teacher: nn.Module,
        student: tuple[nn.Module, ChannelGraph],
        choose: Callable[[Budget], Selection],
        budget: Budget,
        now: tuple[float, float],
    ) -> Selection:
        """``choose(budget)``, measured on a cut copy of the ``student`` (traced as its graph)
        when it is predicted to reach the target speed-up; while the measurement falls short,
        chosen again with the floor corrected by it, ``cfg.latency_checks`` times at most — so a
        step meant to be the last one is, without retraining a step in between. ``now``: the
        student's predicted seconds and last measured speed-up. Measures in the calling process alone."""
        target, (predicted, speedup) = target_speedup(cfg), now
        selection = choose(budget)
        for _ in range(cfg.latency_checks):
            seconds = self.table.network_seconds(selection.seconds)
            if not selection.removal or speedup * predicted < target * seconds:
                break  # a step on the way: the next step corrects by its own measurement
            model, graph = copy.deepcopy(student)  # the graph names the copy's modules
            remove(model, graph, selection.removal)
            base, after = measure([teacher, model], self.example, self.repeats)
            if base / after >= target:
                break
            floor = self.table.layer_seconds_at(seconds * base / after / target)
            again = choose(dataclasses.replace(budget, floor_seconds=floor))
            if again.removal == selection.removal:  # the step's size allows no more
                break
            selection = again
        return selection

    def floor(self, cfg: PruningConfig, predicted: float, speedup: float) -> float:
        """The layer seconds a step's selection may go down to: the student's ``predicted`` time
        shrunk by the speed-up still missing after the last measured ``speedup`` — a ratio to the
        teacher measured in turns, so neither the machine's drift nor the prediction's error adds up."""
        return self.table.layer_seconds_at(predicted * speedup / target_speedup(cfg))


def prepare(
    cfg: PruningConfig,
    teacher: nn.Module,
    graph: ChannelGraph,
    retrace: Callable[[nn.Module], ChannelGraph],
    device: torch.device,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None,
) -> LatencyBudget:
    """Build (or load) the latency table of ``teacher`` (traced as ``graph``) on ``device`` and
    calibrate it on the teacher and on a thinned copy — in rank 0 alone under torchrun, so that
    no other process's work disturbs the clock; every rank gets the result."""
    budget: LatencyBudget | None = None
    if distributed.is_main():
        align = cfg.round_to or alignment(device)
        table = build_table(graph, device, progress=progress, align=align)
        example = graph.example[:1].to(device)
        calibrate(table, example, (teacher, graph), thinned_copy(teacher, retrace, align), repeats=cfg.latency_repeats)
        budget = LatencyBudget(table, example, cfg.latency_repeats)
    return distributed.broadcast(budget)


def thinned_copy(
    model: nn.Module, retrace: Callable[[nn.Module], ChannelGraph], align: int
) -> tuple[nn.Module, ChannelGraph]:
    """A copy of ``model`` without three quarters of every group's removable aligned units, chosen
    at random — a calibration point as far from the full model as pruning usually goes — and its graph."""
    thin = copy.deepcopy(model)
    graph = retrace(thin)
    remove(thin, graph, _thinned(graph, align))
    return thin, retrace(thin)


def _thinned(graph: ChannelGraph, align: int) -> dict[int, list[int]]:
    rng = random.Random(0)
    removal = {}
    for group in graph.groups:
        scores = torch.tensor([rng.random() for _ in range(group.channels)])
        taken = units(group, scores, Limits(round_to=align, free_below=True))
        if taken:
            removal[group.id] = [c for unit in taken[: max(1, 3 * len(taken) // 4)] for c in unit]
    return removal
