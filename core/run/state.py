"""The state of one run: everything the pruning loop reads and changes, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.counting import CostReport
from ..plugin_manager import Manager
from ..protocols import Task
from ..pruning.plan import Plan
from ..pruning.selection import Reference
from ..training.data import TrainingData
from ..training.trainer import Teacher, Trainer
from .config import Config
from .run_log import RunLog


@dataclass
class Step:
    """What one pruning step did; the rows of the progress table and the JSONL log."""

    step: int
    macs: int
    params: int
    macs_percent: float
    params_percent: float
    removed: int
    at_limit: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    #: with approximate cuts allowed: how much the step's cut changed the output on the example
    #: input (‖after − before‖ / ‖before‖), before retraining
    deviation: float | None = None

    def record(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k != "metrics" and v is not None}
        return {"event": "step", **fields, **self.metrics}


@dataclass
class RunState:
    """A prepared run. ``teacher`` is the frozen baseline (``distil_from`` with its distillation
    taps), ``model`` the student being pruned, ``plan`` what has been cut from it so far,
    ``original`` the baseline's cost."""

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
    plan: Plan = field(default_factory=Plan)
    steps: list[Step] = field(default_factory=list)
    start_step: int = 1


@dataclass
class Result:
    """What a finished run returns."""

    model: nn.Module
    plan: Plan
    steps: list[Step]
    summary: dict[str, Any]
    state: RunState
