"""The settings of pruning — the budget, the ranking, the limits, the alignment, the guard — as one
validated object whose defaults serve every door: a run's ``pruning`` section is one, and
:func:`prunekit.prune_to` builds one from its arguments.

Settings that name plugins (the criterion mix) have no defaults here: they come from the
``preset`` a plugin registers, merged beneath what is given (:func:`beneath`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph
from ..schema import field
from ..seam import Runtime
from .budget import ResourceBudget
from .latency_budget import LatencyBudget
from .ranking import CriterionConfig
from .selection import Limits


@dataclass
class StepSize:
    """How much one step removes: exactly one of macs, params, filters, percent."""

    macs: int | None = field(None, min=1, doc="MACs to remove per step")
    params: int | None = field(None, min=1, doc="parameters to remove per step")
    filters: int | None = field(None, min=1, doc="channels to remove per step")
    percent: float | None = field(
        None, min=0, max=100, open_min=True, doc="percent of the original resource to remove per step"
    )

    def check(self, path: str) -> None:
        given = [k for k in ("macs", "params", "filters", "percent") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"{path or 'step'}: give exactly one of macs, params, filters, percent (got {given or 'none'})"
            )

    @property
    def kind(self) -> str:
        return next(k for k in ("macs", "params", "filters", "percent") if getattr(self, k) is not None)

    @property
    def amount(self) -> float:
        return getattr(self, self.kind)


@dataclass
class PruningConfig:
    """The budget, the ranking, the limits and the guard."""

    preset: str | None = field("default", doc="registered preset whose settings the config overrides")
    resource: Literal["macs", "params", "latency"] = field(
        "macs", doc="what the budget counts; latency: measured on the run's device, with a latency table"
    )
    prune_away_percent: float = field(
        50.0, min=0, max=100, open_min=True, doc="stop when this percent of the resource is gone"
    )
    target_speedup: float | None = field(
        None,
        min=1,
        open_min=True,
        doc="stop at this measured speed-up instead of the percent; with macs or params, steps remove that resource",
    )
    runtime: str = field(
        "eager",
        doc="where the model is deployed: the latency table, target_speedup and the report's speed-up are measured "
        "in it (eager, compile, onnxruntime, or a plugin's)",
    )
    compare_runtimes: list[str] | Literal["all"] = field(
        "all", doc="the report also measures the speed-up in these runtimes: all (every one that runs here), or a list"
    )
    latency_repeats: int = field(10, min=1, doc="forwards measured (median) for each latency measurement")
    latency_checks: int = field(
        2, min=0, doc="latency budget: selections measured on a cut copy before a step meant to reach the target"
    )
    min_macs: int | None = field(None, min=0, doc="also stop at this many MACs")
    min_params: int | None = field(None, min=0, doc="also stop at this many parameters")
    step: StepSize = field(StepSize(percent=10.0))
    criterion: CriterionConfig = field(CriterionConfig())
    layer_limit_percent: float = field(75.0, min=0, max=100, doc="at most this % of a layer's parameters")
    block_limit_percent: float = field(75.0, min=0, max=100, doc="at most this % of a block's parameters")
    min_channels: int = field(1, min=1, doc="channels every layer keeps at least")
    align: int | Literal["auto", "none"] = field(
        "auto",
        doc="keep every group's channel count at a multiple runtimes run fast: auto (the runtime's on the device: "
        "16 on CPUs, 8 on GPUs), none, or a number; a count goes below one multiple only once nothing aligned is left",
    )
    round_to: int | None = field(
        None, min=1, doc="keep channel counts multiples of this, never below one (wins over align)"
    )
    calibration_batches: int = field(8, min=1, doc="batches of the calibration pass")
    calibration_loss: Literal["task", "training"] = field(
        "task",
        doc="what gradient criteria (taylor) differentiate: the task's calibration loss (segmentation: "
        "class-balanced cross-entropy; the training loss where a task names none), or the run's training loss",
    )
    activations_at: Literal["output", "activation"] = field(
        "activation", doc="activation criteria observe the activation after the producer, or its raw output"
    )
    max_steps: int = field(100, min=1, doc="steps at most, whatever the budget")
    protected: list[str] = field([], doc="layers never pruned, besides the traversal's")
    max_drop: float | None = field(
        5.0, min=0, doc="roll a step back when the task's metric falls more than this many points below the baseline"
    )
    class_floor: float | None = field(
        0.05, min=0, max=1, doc="roll a step back when a class the baseline scored at least this falls below it"
    )
    retries: int = field(3, min=0, doc="steps in a row rolled back (each with half the step) before the run stops")

    approximate: list[str] = field(
        [],
        doc="approximate cuts allowed, e.g. [layer_norm]: layers no cut is exact for (LayerNorm over channels) "
        "are cut too, and each step records how much the cut changed the output",
    )

    def check(self, path: str) -> None:
        if isinstance(self.align, int) and self.align < 1:
            raise ConfigError(f"{path}.align: {self.align!r} is out of range; give auto, none or a multiple >= 1")

    def limits(self) -> Limits:
        """The layer and block limits, the channels every layer keeps and ``round_to``."""
        return Limits(self.layer_limit_percent, self.block_limit_percent, self.min_channels, self.round_to)

    def target(self) -> float:
        """The measured speed-up pruning stops at, where it measures (:meth:`measures`)."""
        return self.target_speedup or 1.0 / (1.0 - self.prune_away_percent / 100.0)

    def measures(self) -> bool:
        """Does the measured speed-up end the pruning (a latency budget, or a target speed-up)?"""
        return self.resource == "latency" or self.target_speedup is not None

    def needs_table(self) -> bool:
        """Are the layers timed (to stop on a measurement, or to rank per second saved)?"""
        return self.measures() or self.criterion.per_cost == "latency"

    def alignment(self, runtime: Runtime, device: torch.device) -> int | None:
        """The channel multiple counts are kept at: ``round_to``, else ``align`` (``auto``: the
        runtime's on the device; ``none``: none)."""
        if self.round_to is not None:
            return self.round_to
        if self.align == "auto":
            return runtime.alignment(device)
        return None if self.align == "none" else self.align

    def timing(
        self,
        teacher: nn.Module,
        graph: ChannelGraph,
        retrace: Callable[[nn.Module], ChannelGraph],
        runtime: Runtime,
        device: torch.device,
        progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    ) -> tuple[LatencyTable, torch.Tensor]:
        """The teacher's latency table in ``runtime`` as these settings time it — at their channel
        multiple, with their repeats — and the batch of one it was calibrated with."""
        align, repeats = self.alignment(runtime, device), self.latency_repeats
        return LatencyBudget.measure_table(teacher, graph, retrace, device, align, repeats, progress, runtime)

    def policy(
        self,
        original: CostReport,
        teacher: nn.Module,
        timing: tuple[LatencyTable, torch.Tensor] | None = None,
        runtime: Runtime | None = None,
        clock: Callable[[list[nn.Module], torch.Tensor, int], list[list[float]]] | None = None,
    ) -> ResourceBudget:
        """The budget policy these settings ask for; ``timing`` (the teacher's latency table and the
        batch it was calibrated with) is needed where pruning measures, in ``runtime`` (with
        ``clock``, where given: see :class:`~prunekit.pruning.LatencyBudget`)."""
        step, floors = (self.step.kind, self.step.amount), (self.min_macs, self.min_params)
        if not self.measures():
            return ResourceBudget(original, self.resource, self.prune_away_percent, step, *floors)
        if timing is None:
            raise ConfigError("a budget that measures its speed-up needs the model's latency table")
        table, example = timing
        return LatencyBudget(
            original, table, teacher, example, self.target(), self.resource, step, *floors,
            self.latency_repeats, self.latency_checks, clock, runtime,
        )  # fmt: skip


def beneath(preset: dict[str, Any], pruning: dict[str, Any]) -> dict[str, Any]:
    """The config's ``pruning`` keys over the preset's; inside ``criterion`` key by key, so a config
    can change the normalisation and keep the preset's mix (a config's ``weights`` replace the
    preset's mix whole)."""
    out = {**preset, **pruning}
    if isinstance(preset.get("criterion"), dict) and isinstance(pruning.get("criterion"), dict):
        out["criterion"] = {**preset["criterion"], **pruning["criterion"]}
    return out
