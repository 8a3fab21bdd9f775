"""The records a run hands its event hooks and keeps in its log: frozen and documented, so that a
plugin reading them depends on these fields only, not on how a run is put together inside.

- :class:`RunInfo` — the run: its folder, task, device, settings and the baseline it prunes;
- :class:`StepRecord` — one pruning step that held: cost after it, what it removed, its metrics;
- :class:`EpochRecord` — one epoch of training, retraining or fine-tuning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """A run, as event hooks see it: ``run_dir``, the ``task``'s name, the ``device``, the run's
    ``config`` as data (its validated YAML), the ``baseline`` model's validation metrics, and its
    ``macs`` and ``params``."""

    run_dir: Path
    task: str
    device: str
    config: Mapping[str, Any]
    baseline: Mapping[str, float]
    macs: float
    params: float


@dataclass(frozen=True)
class StepRecord:
    """What one pruning step did; the rows of the progress table and the JSONL log."""

    step: int
    macs: float
    params: float
    macs_percent: float
    params_percent: float
    removed: int
    at_limit: int
    seconds: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    #: with approximate cuts allowed: how much the step's cut changed the output on the example
    #: input (‖after − before‖ / ‖before‖), before retraining
    deviation: float | None = None
    #: with a latency table: the student's measured milliseconds per forward (batch 1, on the
    #: run's device), its speed-up over the teacher measured in turns with the interval of that
    #: speed-up, and the table's prediction of it (ratios, which the machine's load does not move)
    latency_ms: float | None = None
    speedup: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    predicted_speedup: float | None = None
    #: the selection's prediction of the cost after the cut (equal to ``macs`` and ``params``, the
    #: recount, when every cost function depends on the shape it is given only)
    predicted_macs: float | None = None
    predicted_params: float | None = None

    def record(self) -> dict[str, Any]:
        """The step as one flat log record: ``event: step``, its fields and its metrics."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {"event": "step", **{k: v for k, v in fields.items() if v is not None}, **self.metrics}


#: prefixes of an epoch record's loss terms (each weighted as it entered the loss) and scales
TERMS = ("loss_", "distill_", "scale_")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a phase (``train``, ``retrain`` after pruning step ``step``, ``finetune``): its
    mean ``loss``, each weighted term of it (``loss_<task loss>``, ``distill_<loss>``, and the
    ``scale_<loss>`` of ``distillation: {balance: auto}``), the learning rate, and the metrics —
    the task's on the validation data, and ``train_<metric>`` on the training batches."""

    phase: str
    epoch: int
    loss: float
    lr: float
    step: int | None = None
    terms: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> EpochRecord:
        """The epoch of a flat log record (``event: epoch``)."""
        known = {"event", "phase", "epoch", "loss", "lr", "step"}
        terms = {k: float(v) for k, v in record.items() if k.startswith(TERMS)}
        metrics = {k: float(v) for k, v in record.items() if k not in known and k not in terms}
        return cls(record["phase"], record["epoch"], record["loss"], record["lr"], record.get("step"), terms, metrics)
