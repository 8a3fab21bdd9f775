"""The state of one run: everything the pruning loop reads and changes, in one typed object."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cost.cost_model import CostModel
from ..cost.counting import CostReport
from ..plugin_manager import Manager
from ..protocols import Task
from ..pruning.plan import Plan
from ..pruning.selection import Reference
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.trainer import Trainer
from .config import Config, PruningConfig
from .latency_budget import LatencyBudget
from .run_log import RunLog


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
    latency: LatencyBudget | None = None
    measured: tuple[float, float] | None = None  # the student's last (seconds, speed-up), measured
    predicted: float | None = None  # the student's predicted seconds after the last cut

    def speedup(self) -> float | None:
        return self.measured[1] if self.measured else None

    def latency_fields(self) -> tuple[float | None, float | None, float | None]:
        """(measured ms, measured speed-up, predicted speed-up) for the step record."""
        if self.measured is None or self.latency is None or self.predicted is None:
            return None, None, None
        return 1e3 * self.measured[0], self.measured[1], self.latency.table.calibration[0][1] / self.predicted

    def latency_floor(self, cfg: PruningConfig, cost: CostModel) -> tuple[float, float] | None:
        """(original layer seconds, this step's floor) for a latency budget's step."""
        if self.latency is None or cfg.resource != "latency":
            return None
        original = self.latency.table.calibration[0][0]
        predicted = self.latency.table.network_seconds(cost.seconds)
        return original, self.latency.floor(cfg, predicted, self.speedup() or 1.0)


@dataclass
class Result:
    """What a finished run returns."""

    model: nn.Module
    plan: Plan
    steps: list[Step]
    summary: dict[str, Any]
    state: RunState
