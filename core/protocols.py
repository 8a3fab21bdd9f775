"""The objects plugins build, as :class:`typing.Protocol` s: what prunekit calls on them.

A plugin's object needs no base class; it only has to offer these attributes and methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


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
    ``default_loss`` maps task-loss names to weights, used when a config gives no ``loss``.
    """

    name: str
    best_metric: str
    best_label: str
    default_loss: dict[str, float]

    def metric(self, n_classes: int, device: torch.device) -> Metric:
        """A fresh accumulator of this task's metrics."""

    def report_rows(
        self, baseline: dict[str, float], pruned: dict[str, float], class_names: Sequence[str]
    ) -> list[list[str]]:
        """Rows ``[label, baseline, pruned, change]`` of the summary table, for these metrics."""
