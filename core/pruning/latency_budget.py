"""The latency budget: a target speed-up measured on the device in the runtime the model is
deployed with, a latency table of the teacher's layers to select by, and the measurement after
every cut that decides when pruning is done — when the lower end of the measured speed-up's
interval reaches the target, so that a measurement taken apart lands at or above it too."""

from __future__ import annotations

import copy
import dataclasses
import functools
import random
import statistics
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from .. import distributed
from ..cost.cost_model import CostModel
from ..cost.counting import CostReport
from ..cost.latency import Speedup, measure_rounds, speedup
from ..cost.latency_table import LatencyTable, build_table, calibrate_table
from ..eager import alignment
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph
from ..seam import Runtime
from .budget import RESOURCES, ResourceBudget
from .selection import Limits, Selection, StepBudget, units
from .surgery import remove


class LatencyBudget(ResourceBudget):
    """Stop at a measured speed-up ``target`` over ``teacher``. ``resource="latency"`` makes each
    step remove the ``table``'s seconds (``step`` as for :class:`ResourceBudget`, ``percent`` of
    the teacher's layer seconds); ``macs`` or ``params`` makes it remove that resource. The
    student is measured in turns with the teacher after every cut (``repeats`` forwards of
    ``example`` in ``runtime``, eager PyTorch where none is given), and the budget is met when the
    lower end of the speed-up's interval reaches ``target``; ``checks`` times at most, a step
    predicted to reach the target is measured on a cut copy first and chosen again while it falls
    short. Under torchrun rank 0 measures and every rank gets its result.
    ``clock(models, x, repeats) -> seconds of each model in each round`` is what measures
    (:func:`prunekit.cost.measure_rounds` in ``runtime``; a test may give a model of the device).
    """

    resources: ClassVar[tuple[str, ...]] = (*RESOURCES, "latency")

    def __init__(
        self,
        original: CostReport,
        table: LatencyTable,
        teacher: nn.Module,
        example: torch.Tensor,
        target: float,
        resource: str = "latency",
        step: tuple[str, float] = ("percent", 10.0),
        min_macs: float | None = None,
        min_params: float | None = None,
        repeats: int = 10,
        checks: int = 2,
        clock: Callable[[list[nn.Module], torch.Tensor, int], list[list[float]]] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if not target > 1:
            raise ConfigError(f"target_speedup {target!r} is out of range; it must be > 1")
        super().__init__(original, resource, 100.0, step, min_macs, min_params)
        self.target, self.timing = target, table
        self.teacher, self.example, self.repeats, self.checks = teacher, example, repeats, checks
        self.clock = clock or functools.partial(measure_rounds, runtime=runtime)
        #: the teacher's layer seconds in the table
        self.original_seconds = table.calibration[0][0] if table.calibration else None
        self.measured: tuple[float, Speedup] | None = None  # the student's last (seconds, speed-up)
        self.predicted: float | None = None  # the student's predicted seconds after the last cut

    @classmethod
    def measure_table(
        cls,
        teacher: nn.Module,
        graph: ChannelGraph,
        retrace: Callable[[nn.Module], ChannelGraph],
        device: torch.device,
        align: int | None = None,
        repeats: int = 10,
        progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
        runtime: Runtime | None = None,
    ) -> tuple[LatencyTable, torch.Tensor]:
        """The latency table of ``teacher`` (traced as ``graph``) on ``device`` in ``runtime``, built
        or loaded from the cache and calibrated on the teacher and a thinned copy, and the batch
        of one it was calibrated with — by rank 0 alone under torchrun, so no other process
        disturbs the clock."""
        result: tuple[LatencyTable, torch.Tensor] | None = None
        if distributed.is_main():
            align = align or (runtime.alignment(device) if runtime is not None else alignment(device))
            table = build_table(graph, device, progress=progress, align=align, runtime=runtime)
            example = graph.example[:1].to(device)
            thin = thinned_copy(teacher, retrace, align)
            calibrate_table(table, example, (teacher, graph), thin, repeats=repeats, runtime=runtime)
            result = (table, example)
        return distributed.broadcast(result)

    # -- what the loop asks ------------------------------------------------------------------
    def floors(self) -> tuple[float, float]:
        return float(self.min_macs or 0), float(self.min_params or 0)  # the measurement ends the run

    def speedup(self) -> Speedup | None:
        """The student's last measured speed-up over the teacher, with its interval."""
        return self.measured[1] if self.measured else None

    def done(self, now: CostReport) -> bool:
        speedup = self.speedup()
        return super().done(now) or (speedup is not None and speedup.low >= self.target * (1 - 1e-9))

    def step_budget(self, cost: CostModel) -> StepBudget:
        if self.resource != "latency":
            return super().step_budget(cost)
        floor = self.floor(self.timing.network_seconds(cost.seconds), self._reached())
        kind, amount = self.step
        if kind != "percent":
            return StepBudget(kind, self.step_scale * amount, *self.floors(), floor)
        if self.original_seconds is None:  # an uncalibrated table: the teacher is the first model stepped
            self.original_seconds = cost.seconds
        return StepBudget("latency", self.step_scale * amount / 100.0 * self.original_seconds, *self.floors(), floor)

    def choose(
        self, select: Callable[[StepBudget], Selection], cost: CostModel, student: tuple[nn.Module, ChannelGraph]
    ) -> Selection:
        """The step's selection; with ``resource="latency"``, measured on a cut copy of the
        ``student`` when it is predicted to reach the target, and while the measurement falls
        short chosen again with the floor corrected by it — so a step meant to be the last one is."""
        budget = self.step_budget(cost)
        selection = select(budget)
        if self.resource != "latency":
            return selection
        predicted, reached = self.timing.network_seconds(cost.seconds), self._reached()
        for _ in range(self.checks):
            seconds = self.timing.network_seconds(selection.seconds)
            if not selection.removal or reached * predicted < self.target * seconds:
                break  # a step on the way: the next step corrects by its own measurement
            model, graph = copy.deepcopy(student)  # the graph names the copy's modules
            remove(model, graph, selection.removal)
            base, after = self.clock([self.teacher, model], self.example, self.repeats)
            measured = speedup(after, base)
            if measured.low >= self.target:
                break
            floor = self.timing.layer_seconds_at(seconds * measured.low / self.target)
            again = select(dataclasses.replace(budget, floor_seconds=floor))
            if again.removal == selection.removal:  # the step's size allows no more
                break
            selection = again
        return selection

    def after_cut(self, student: nn.Module, selection: Selection) -> None:
        self.predicted = self.timing.network_seconds(selection.seconds)
        self.measure(student)

    def measure(self, student: nn.Module) -> None:
        """The student's seconds and speed-up over the teacher, measured in turns with it."""
        result = None
        if distributed.is_main():
            base, now = self.clock([self.teacher, student], self.example, self.repeats)
            result = (statistics.median(now), speedup(now, base))
        self.measured = distributed.broadcast(result)

    def _reached(self) -> float:
        """The speed-up the student surely has: its interval's lower end (1 before any measurement)."""
        measured = self.speedup()
        return measured.low if measured is not None else 1.0

    def record(self) -> dict[str, Any]:
        """The student's measured milliseconds per forward (batch 1), its speed-up over the teacher
        measured in turns with its interval, and the table's prediction of that speed-up."""
        if self.measured is None or self.predicted is None or not self.timing.calibration:
            return {}
        seconds, measured = self.measured
        return {
            "latency_ms": 1e3 * seconds,
            "speedup": measured.median,
            "speedup_low": measured.low,
            "speedup_high": measured.high,
            "predicted_speedup": self.timing.calibration[0][1] / self.predicted,
        }

    # -- what the step reads -----------------------------------------------------------------
    @property
    def table(self) -> LatencyTable:
        return self.timing

    def floor(self, predicted: float, reached: float) -> float:
        """The layer seconds a step's selection may go down to: the student's ``predicted`` time
        shrunk by the speed-up still missing after the last measured one (``reached``, its lower
        end) — a ratio to the teacher measured in turns, so neither the machine's drift nor the
        prediction's error adds up."""
        return self.timing.layer_seconds_at(predicted * reached / self.target)


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
        taken = units(group, scores, Limits(round_to=align))
        if taken:
            removal[group.id] = [c for unit in taken[: max(1, 3 * len(taken) // 4)] for c in unit]
    return removal
