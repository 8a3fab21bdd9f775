"""The state of one run: everything the pruning loop reads and changes, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..graph.overrides import CostFunctions
from ..plugin.manager import Manager
from ..plugin.protocols import Task
from ..pruning.budget import ResourceBudget
from ..pruning.plan import Plan
from ..pruning.selection import Reference
from ..run_records import StepRecord
from ..seam import Runtime
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.trainer import Trainer
from .config import Config
from .guard import Guard
from .reporting.report import summary_table
from .reporting.run_log import RunLog


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
    cost_functions: CostFunctions = field(default_factory=CostFunctions)
    #: the teacher's latency table, where the run times its layers
    table: LatencyTable | None = None
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    plan: Plan = field(default_factory=Plan)
    steps: list[StepRecord] = field(default_factory=list)
    start_step: int = 1
    #: why pruning ended before the budget was met, if it did
    stopped: str | None = None


@dataclass
class Result:
    """What a finished run returns: the pruned ``model``, the ``plan`` that rebuilds it, the record
    of every step, the ``summary`` (as ``summary.json`` holds it), the frozen ``teacher`` it was
    pruned from, the ``example_input`` it was traced and counted on, and its ``task``. Printed, the
    table of baseline against pruned the CLI prints."""

    model: nn.Module
    plan: Plan
    steps: list[StepRecord]
    summary: dict[str, Any]
    teacher: nn.Module
    example_input: torch.Tensor
    task: Task

    @classmethod
    def of(cls, state: RunState, summary: dict[str, Any]) -> Result:
        return cls(state.model, state.plan, state.steps, summary, state.teacher, state.example, state.task)

    def table(self) -> str:
        return summary_table(self.summary, self.task)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        metric = self.task.best_metric
        after = self.summary.get("metrics", {}).get(metric)
        shown = f", {metric} {after:.4f}" if after is not None else ""
        return f"<Result: {len(self.steps)} steps, {self.summary['macs_percent']:.1f} % of the MACs{shown}>"
