"""Budget policies: when pruning is done, and how much one step removes.

A policy answers three questions the pruning loop asks — is the model small (or fast) enough
(:meth:`~ResourceBudget.done`), what does the next step remove (:meth:`~ResourceBudget.choose`),
and what was measured after a cut (:meth:`~ResourceBudget.after_cut`) — so that a MACs or
parameter budget and a measured latency budget (:class:`prunekit.pruning.LatencyBudget`) drive
the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from ..cost.cost_model import CostModel
from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph
from .selection import Selection, StepBudget

RESOURCES = ("macs", "params")
STEP_KINDS = ("macs", "params", "filters", "percent")


@dataclass
class ResourceBudget:
    """Remove ``percent`` of the ``original`` model's ``resource`` (``macs`` or ``params``), ``step``
    at a time, never going below ``min_macs`` or ``min_params``.

    ``step`` is ``(kind, amount)``: ``("percent", 10)`` removes 10 % of the original resource per
    step; ``macs``, ``params`` and ``filters`` remove that many. ``step_scale`` shrinks every step
    (the guard halves it after a step that broke the model).
    """

    original: CostReport
    resource: str = "macs"
    percent: float = 50.0
    step: tuple[str, float] = ("percent", 10.0)
    min_macs: float | None = None
    min_params: float | None = None
    step_scale: float = field(default=1.0, init=False)
    #: the resources this policy can count
    resources: ClassVar[tuple[str, ...]] = RESOURCES

    def __post_init__(self) -> None:
        if self.resource not in self.resources:
            raise ConfigError(f"resource {self.resource!r} is not allowed; valid: {', '.join(self.resources)}")
        if self.step[0] not in STEP_KINDS:
            raise ConfigError(f"step {self.step[0]!r} is not allowed; valid: {', '.join(STEP_KINDS)}")
        if not 0 < self.percent <= 100:
            raise ConfigError(f"percent {self.percent!r} is out of range; it must be > 0 and <= 100")

    # -- what the loop asks ------------------------------------------------------------------
    def floors(self) -> tuple[float, float]:
        """(MACs, parameters) at or below which the budget is met."""
        keep = 1.0 - self.percent / 100.0
        floor_macs = keep * self.original.macs if self.resource == "macs" else 0.0
        floor_params = keep * self.original.params if self.resource == "params" else 0.0
        return max(floor_macs, self.min_macs or 0), max(floor_params, self.min_params or 0)

    def done(self, now: CostReport) -> bool:
        floor_macs, floor_params = self.floors()
        return now.macs <= floor_macs or now.params <= floor_params

    def step_budget(self, cost: CostModel) -> StepBudget:
        """What the next step removes, never going below the floors."""
        kind, amount = self.step
        floor_macs, floor_params = self.floors()
        if kind == "percent":
            total = self.original.macs if self.resource == "macs" else self.original.params
            return StepBudget(self.resource, self.step_scale * amount / 100.0 * total, floor_macs, floor_params)
        return StepBudget(kind, self.step_scale * amount, floor_macs, floor_params)

    def choose(
        self, select: Callable[[StepBudget], Selection], cost: CostModel, student: tuple[nn.Module, ChannelGraph]
    ) -> Selection:
        """The step's selection: ``select`` called with this step's budget."""
        return select(self.step_budget(cost))

    def after_cut(self, student: nn.Module, selection: Selection) -> None:
        """Measure what needs measuring after a cut (nothing, for a resource that is counted)."""

    def record(self) -> dict[str, Any]:
        """What the step record carries about the budget (measurements)."""
        return {}

    # -- what the step reads -----------------------------------------------------------------
    @property
    def table(self) -> LatencyTable | None:
        """The latency table the cost model predicts seconds with (none: nothing is timed)."""
        return None

    def halve_step(self) -> None:
        self.step_scale /= 2
