"""How a run retrains and judges each cut model — the one thing its doors differ in — as one small
protocol with three adapters: prunekit's trainer (``Pruner.run``), your ``retrain.function``, and
your own loop (``Pruner.steps()``). The pruning loop holds one and never asks which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import ConfigError
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.seeds import step_seed
from ..training.trainer import Trainer
from .config import Config
from .pruned_step import PrunedStep


class Retraining(Protocol):
    """Retrains a step's cut model and judges models: what the pruning loop asks of a run."""

    def calibration_batches(self, step: int) -> Iterable[dict[str, Any]] | None:
        """The batches step ``step``'s criteria observe (``None``: no training data)."""
        ...

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """What gradient criteria (Taylor) differentiate."""
        ...

    def training(self, step: PrunedStep) -> contextlib.AbstractContextManager[None]:
        """Held while ``step`` is trained: what its trainer needs set up (and removed after)."""
        ...

    def retrain(self, step: PrunedStep) -> None:
        """Train ``step.model``; ``step.report(...)`` what it measured, if it did."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The task's validation metrics of ``model`` (``{}`` without validation data)."""
        ...


@dataclass
class _Shared:
    """What every retraining of a run shares: calibration batches seeded by the step, the task's
    calibration loss (or the training loss), and validation by the run's trainer."""

    config: Config
    trainer: Trainer
    teacher: Teacher

    @property
    def data(self) -> TrainingData:
        return self.trainer.data

    def calibration_batches(self, step: int) -> Iterable[dict[str, Any]] | None:
        if not self.data.has_train:
            return None
        return self.data.calibration_batches(self.config.pruning.calibration_batches, step_seed(self.config.seed, step))

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        by_task = getattr(self.trainer.task, "calibration_loss", None)
        if self.config.pruning.calibration_loss == "task" and by_task is not None:
            return by_task(logits, batch)
        return self.trainer.objective.task_loss(logits, batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.trainer.evaluate(model)

    @contextlib.contextmanager
    def training(self, step: PrunedStep) -> Iterator[None]:
        """The step's training data and distillation losses, for training outside prunekit's trainer."""
        seed = step_seed(self.config.seed, step.step)
        step.train = self.data.epochs(seed) if self.data.has_train else None
        step.distiller = self.trainer.distiller(step.model, self.teacher, seed)
        try:
            yield
        finally:
            if step.distiller is not None:
                step.distiller.remove()


class BuiltIn(_Shared):
    """prunekit's trainer: ``retrain.epochs_per_step`` epochs with the task losses and distillation."""

    @contextlib.contextmanager
    def training(self, step: PrunedStep) -> Iterator[None]:
        yield  # the trainer sets its distillation up itself

    def retrain(self, step: PrunedStep) -> None:
        retrain = self.config.retrain
        if retrain == "none" or not step.epochs:
            return
        if not self.data.has_train:
            raise ConfigError("retraining needs training data (train=); or train in your own loop with steps()")
        seed = step_seed(self.config.seed, step.step)
        metrics = self.trainer.fit(step.model, "retrain", retrain, step.epochs, seed, step.step, teacher=self.teacher)
        if metrics:
            step.report(metrics)


@dataclass
class Function(_Shared):
    """Your ``retrain.function(step)``: what it returns is the step's metric."""

    function: Callable[[PrunedStep], Any]

    def retrain(self, step: PrunedStep) -> None:
        result = self.function(step)
        if result is not None and step.metrics is None:
            step.report(result)


class OwnLoop(_Shared):
    """Your training loop over ``Pruner.steps()``: it trains each step while the loop waits."""

    def retrain(self, step: PrunedStep) -> None:
        """Nothing: the step was yours to train before the loop came back."""


def retraining_for(config: Config, trainer: Trainer, teacher: Teacher, function: Callable | None) -> Retraining:
    """The retraining a run's config asks for: ``retrain.function`` where it names one, else the trainer."""
    if function is not None:
        return Function(config, trainer, teacher, function)
    return BuiltIn(config, trainer, teacher)
