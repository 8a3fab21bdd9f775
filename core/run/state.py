"""The state of one run: everything the pruning loop reads and changes, in one typed object."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..graph.overrides import Pricing
from ..plugin.manager import Manager
from ..plugin.protocols import Task
from ..pruning.budget import ResourceBudget
from ..pruning.plan import Plan
from ..pruning.selection import Reference
from ..seam import Runtime
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.trainer import Trainer
from .config import Config
from .guard import Guard
from .reporting.report import summary_table
from .reporting.run_log import RunLog


@dataclass
class Step:
    """What one pruning step did; the rows of the progress table and the JSONL log."""

    step: int
    macs: float
    params: float
    macs_percent: float
    params_percent: float
    removed: int
    at_limit: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    #: with approximate cuts allowed: how much the step's cut changed the output on the example
    #: input (‖after − before‖ / ‖before‖), before retraining
    deviation: float | None = None
    #: with a latency table: the student's measured milliseconds per forward (batch 1, on the
    #: run's device), its speed-up over the teacher measured in turns, and the table's prediction
    #: of that speed-up (a ratio, which the machine's changing load does not move)
    latency_ms: float | None = None
    speedup: float | None = None
    speedup_low: float | None = None  # the interval of the measured speed-up
    speedup_high: float | None = None
    predicted_speedup: float | None = None
    #: the selection's prediction of the cost after the cut (equal to ``macs`` and ``params``, the
    #: recount, when every cost function depends on the shape it is given only)
    predicted_macs: float | None = None
    predicted_params: float | None = None

    def record(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k != "metrics" and v is not None}
        return {"event": "step", **fields, **self.metrics}

    def check_prediction(self) -> None:
        """Warn where the selection's prediction is not the recount: a cost function then depends
        on more than the shape it is given."""
        if (self.predicted_macs, self.predicted_params) != (self.macs, self.params):
            warnings.warn(
                f"step {self.step}: the selection predicted {self.predicted_macs} MACs and "
                f"{self.predicted_params} parameters, the pruned model counts {self.macs} and {self.params}; a cost "
                "function must depend only on its shape argument and the module's static attributes (kernel "
                "size, stride), not on the module's current channel counts or weights",
                RuntimeWarning,
                stacklevel=2,
            )


@dataclass
class RunState:
    """A prepared run. ``teacher`` is the frozen baseline (``distil_from`` with its distillation
    taps), ``model`` the student being pruned, ``plan`` what has been cut from it so far,
    ``original`` the baseline's cost, ``budget`` the policy that says when pruning is done, and
    ``baseline_metrics`` the teacher's validation metrics (``{}`` without validation data)."""

    config: Config
    run_dir: Path
    plugins: Manager
    device: torch.device
    data: TrainingData
    task: Task
    log: RunLog
    teacher: nn.Module
    teacher_hash: str
    example: torch.Tensor
    original: CostReport
    reference: Reference
    trainer: Trainer
    distil_from: Teacher
    model: nn.Module
    budget: ResourceBudget
    guard: Guard
    #: where the model is deployed: the runtime its speed is measured in
    runtime: Runtime
    pricing: Pricing = field(default_factory=Pricing)
    #: the teacher's latency table, where the run times its layers
    table: LatencyTable | None = None
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    plan: Plan = field(default_factory=Plan)
    steps: list[Step] = field(default_factory=list)
    start_step: int = 1


@dataclass
class Result:
    """What a finished run returns; printed, the table of baseline against pruned the CLI prints."""

    model: nn.Module
    plan: Plan
    steps: list[Step]
    summary: dict[str, Any]
    state: RunState

    def table(self) -> str:
        return summary_table(self.summary, self.state.task)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        metric = self.state.task.best_metric
        after = self.summary.get("metrics", {}).get(metric)
        shown = f", {metric} {after:.4f}" if after is not None else ""
        return f"<Result: {len(self.steps)} steps, {self.summary['macs_percent']:.1f} % of the MACs{shown}>"
