"""What :meth:`prunekit.Pruner.steps` hands your training loop after each cut."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..cost.counting import CostReport
from ..errors import ConfigError, PruneError
from ..pruning.step import Proposal
from ..pruning.structure import Structure, first_change, structure
from ..training.distiller import Distiller


@dataclass
class PrunedStep:
    """Step ``step``: ``model`` was just cut (in place; its parameters are new tensors, so build
    your optimizer from :meth:`parameters` every step), ``cost`` is what it costs now, ``last`` says
    whether the budget is met with this step. Train it your way for ``epochs`` epochs (the
    config's ``retrain.epochs_per_step``) on ``train`` (the data given, if any), add
    :meth:`distillation` to your loss to distil from ``teacher``, then :meth:`report` a metric —
    or report nothing and prunekit validates the model itself when it has validation data.
    """

    step: int
    model: nn.Module
    teacher: nn.Module
    proposal: Proposal
    cost: CostReport
    last: bool
    epochs: int
    device: torch.device
    train: Iterable[Any] | None = None
    distiller: Distiller | None = None
    metrics: dict[str, float] | None = field(default=None, init=False)
    cut_as: Structure = field(default_factory=dict, init=False, repr=False)  # the model as the cut left it

    def __post_init__(self) -> None:
        self.cut_as = structure(self.model)

    def check_structure(self, model: nn.Module) -> None:
        """Refuse a step whose model your loop replaced or changed the structure of: the run's plan
        would not rebuild it, and its export would not load."""
        change = "step.model was replaced" if model is not self.model else first_change(self.cut_as, structure(model))
        if change is not None:
            raise PruneError(
                f"step {self.step}: your loop changed the model's structure ({change}); the run's plan cannot "
                "rebuild it — train the step's weights only, and let the steps cut (vetoes: pruning.protected)"
            )

    def distillation(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The distillation losses (``distillation`` in the config), weighted and summed, for the
        student's ``logits`` on ``images`` — call it after your forward of the same ``images``
        (it reads the features that forward recorded and runs the frozen teacher). 0 without
        distillation losses."""
        if self.distiller is None:
            return logits.new_zeros(())
        terms = self.distiller.terms(*self.distiller.outputs(images, logits))
        return sum(terms.values(), logits.new_zeros(()))

    def parameters(self) -> list[nn.Parameter]:
        """What an optimizer trains this step: the model's parameters and the distillation
        losses' adapters (1×1 convolutions matching pruned features to the teacher's)."""
        extra = self.distiller.parameters() if self.distiller else []
        return [*self.model.parameters(), *extra]

    def report(self, metric: float | Mapping[str, float] | None = None, **metrics: float) -> None:
        """Your validation result for this step: the task's metric as a number, or metrics by
        name (``miou=0.87``). The guard and the step record use it; a metric that is not a finite
        number rolls the step back."""
        given: dict[Any, Any] = dict(metric) if isinstance(metric, Mapping) else {}
        if _number(metric):
            given["metric"] = metric
        elif metric is not None and not isinstance(metric, Mapping):
            raise ConfigError(f"step.report: {metric!r} is neither a number nor a mapping of metrics")
        given.update(metrics)
        for name, value in given.items():
            if not isinstance(name, str) or not _number(value):
                raise ConfigError(f"step.report: {name!r}: {value!r} is not a metric; report numbers by name")
        self.check_structure(self.model)
        self.metrics = {name: float(value) for name, value in given.items()}


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
