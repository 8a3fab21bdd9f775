"""The objects plugins build, as :class:`typing.Protocol` s: what prunekit calls on them.

A plugin's object needs no base class; it only has to offer these attributes and methods. (Layer
types are the exception: they subclass :class:`prunekit.LayerType`.) ``prunekit.testing`` checks
an object against its protocol on real tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from ..records import Outputs, ScoredLayer


@runtime_checkable
class Criterion(Protocol):
    """Scores the output channels of each layer; higher is more important.

    ``needs`` is a subset of ``{"weights", "activations", "gradients"}``: weights are read in
    ``score``; activations (and gradients) arrive through ``observe`` during the calibration pass,
    once per batch and scored layer, with channels on dim 1 — accumulate them as running sums so
    memory does not grow with the batches, and so their order does not matter. ``reset()`` starts
    a new pass. Under torchrun ``all_reduce(sum_)``, when present, replaces each statistic ``t`` by
    ``sum_(t)``.
    """

    needs: frozenset[str]

    def reset(self) -> None: ...

    def observe(self, layer: str, activation: torch.Tensor, gradient: torch.Tensor | None) -> None: ...

    def score(self, layer: ScoredLayer) -> torch.Tensor | None:
        """One value per output channel of ``layer``, or ``None`` to say nothing about it."""


@runtime_checkable
class DistillationLoss(Protocol):
    """An ``nn.Module`` comparing the student with the frozen teacher.

    ``taps`` lists the module paths whose outputs it reads (``None``: the traversal's defaults,
    ``()``: logits only). ``forward(student, teacher)`` returns a scalar and never writes to the
    teacher's tensors. An optional ``setup(student, teacher)`` is called with one batch's outputs
    before each training phase, before the optimizer is built: the place to create adapters for
    channel counts that pruning made differ (they are trained with the student, never exported).
    """

    taps: tuple[str, ...] | None

    def __call__(self, student: Outputs, teacher: Outputs) -> torch.Tensor: ...


@runtime_checkable
class Logger(Protocol):
    """Receives every record of a run: flat dicts with an ``event`` — ``epoch`` (phase, epoch,
    loss, each weighted term ``loss_<task loss>`` / ``distill_<loss>``, ``train_<metric>``, lr,
    ``scale_<loss>`` under ``distillation: {balance: auto}``, the task's validation metrics),
    ``step`` (step, macs, params, macs_percent, params_percent, removed, at_limit, seconds, the
    metrics), ``stop`` (message) and ``summary`` (macs, params, …).
    Built as ``factory(run_dir, **args)``; it writes only inside ``run_dir``."""

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Metric(Protocol):
    """Validation metrics accumulated over batches.

    ``state`` holds every running sum in one tensor; under torchrun prunekit adds the tensors of
    all processes in place before calling :meth:`compute`, so every process reports the metrics of
    the whole validation set.
    """

    state: torch.Tensor

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        """Add one batch: the model's output and the batch it was computed on."""

    def compute(self) -> dict[str, float]:
        """The metrics of everything added so far, by name."""


@runtime_checkable
class Task(Protocol):
    """What kind of prediction a model makes, and how it is scored.

    ``best_metric`` names the metric (higher is better) that picks the best epoch of every
    training phase; ``best_label`` is its column heading in progress lines and reports.
    ``default_loss`` is the task losses a config without ``loss`` gets, in the config's form:
    ``{name: weight}`` or ``{name: {weight, args}}``. An optional ``class_metric`` names the
    prefix of the per-class metrics (``"iou_"`` for ``iou_0``, ``iou_1`` …): the guard then rolls
    back a step that empties a class. An optional ``default_criterion`` (``{name: weight}``) is
    the criterion mix a run of this task ranks channels by when its config names none (otherwise
    weight norm and Taylor in equal parts). An optional ``calibration_loss(logits, batch)`` is
    what gradient criteria differentiate in the calibration pass (otherwise the training loss).
    """

    name: str
    best_metric: str
    best_label: str
    default_loss: dict[str, Any]

    def metric(self, n_classes: int, device: torch.device) -> Metric:
        """A fresh accumulator of this task's metrics."""

    def report_rows(
        self, baseline: dict[str, float], pruned: dict[str, float], class_names: Sequence[str]
    ) -> list[list[str]]:
        """Rows ``[label, baseline, pruned, change]`` of the summary table, for these metrics."""
