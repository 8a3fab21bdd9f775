"""Distillation from the frozen teacher: the taps that keep module outputs, and the losses of one
training phase with their weights (or, under ``balance: auto``, their scales)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, suggest
from ..records import Outputs

#: a distillation term below this share of the task loss is not scaled by ``balance: auto``
UNMEASURABLE = 1e-3


class Taps:
    """Forward hooks that keep the outputs of the named modules of one network."""

    def __init__(self, model: nn.Module, paths: Iterable[str]) -> None:
        modules = dict(model.named_modules())
        for path in paths:
            if path not in modules:
                raise ConfigError(f"distillation tap {path!r} is not a module of the model; {suggest(path, modules)}")
        self.features: dict[str, torch.Tensor] = {}
        self.handles = [modules[p].register_forward_hook(self._keep(p)) for p in paths]

    def _keep(self, path: str) -> Callable[[nn.Module, tuple, Any], None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self.features[path] = output if torch.is_tensor(output) else output[0]

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class Distiller:
    """The distillation losses of one phase, with the taps they read on student and teacher."""

    teacher: nn.Module
    losses: dict[str, tuple[nn.Module, float]]
    loss_taps: dict[str, tuple[str, ...]]
    student_taps: Taps
    teacher_taps: Taps
    #: with ``balance: auto``, the factor each raw term is multiplied by in place of its weight
    scales: dict[str, float] = field(default_factory=dict)

    def outputs(self, image: torch.Tensor, logits: torch.Tensor) -> tuple[Outputs, Outputs]:
        """The student's output (just computed) and the teacher's, with their tapped features."""
        with torch.no_grad():
            teacher = Outputs(self.teacher(image), dict(self.teacher_taps.features))
        return Outputs(logits, dict(self.student_taps.features)), teacher

    def terms(self, student: Outputs, teacher: Outputs) -> dict[str, torch.Tensor]:
        """Each distillation loss, weighted (or scaled) as it enters the total."""
        terms = {}
        for name, (loss, weight) in self.losses.items():
            factor = self.scales.get(name, weight)
            if factor:
                terms[name] = factor * loss(*self.own(name, student, teacher))
        return terms

    def balance(self, task: float, raw: dict[str, float]) -> None:
        """Scale each term so that its ``raw`` value becomes ``task`` × its weight. A term below
        ``UNMEASURABLE`` × the task loss keeps its weight, with a warning: the student still
        matches the teacher there, and scaling would magnify noise."""
        self.scales = {}
        for name, (_, weight) in self.losses.items():
            if raw[name] > UNMEASURABLE * task:
                self.scales[name] = weight * task / raw[name]
            else:
                self.scales[name] = weight
                warnings.warn(
                    f"distillation balance: {name} is {raw[name]:.3g} on the first batches against a task loss of "
                    f"{task:.3g}, too small to scale by; it keeps its weight {weight}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def own(self, name: str, student: Outputs, teacher: Outputs) -> tuple[Outputs, Outputs]:
        """Each loss sees its own taps, in forward order."""
        taps = self.loss_taps[name]
        return (
            Outputs(student.logits, {p: student.features[p] for p in taps}),
            Outputs(teacher.logits, {p: teacher.features[p] for p in taps}),
        )

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the losses own (adapters): trained with the student, never exported."""
        return [p for loss, _ in self.losses.values() for p in loss.parameters()]

    def remove(self) -> None:
        self.student_taps.remove()
        self.teacher_taps.remove()


@dataclass(frozen=True)
class Teacher:
    """The frozen model to distil from, and the module paths its losses tap by default."""

    model: nn.Module
    taps: tuple[str, ...] = ()


def loss_taps(loss: nn.Module, default: tuple[str, ...]) -> tuple[str, ...]:
    """The module paths a distillation loss reads (its ``taps``; ``None``: the defaults)."""
    taps = getattr(loss, "taps", None)
    return default if taps is None else tuple(taps)
