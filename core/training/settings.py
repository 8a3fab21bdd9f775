"""The settings of one training phase (baseline, retraining, fine-tuning) and of the loss weights
over epochs. They are sections of the run config, validated by :mod:`prunekit.schema`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..schema import field


@dataclass
class OptimizerConfig:
    """The optimizer of a phase."""

    name: Literal["adam", "adamw", "sgd"] = field("adam", doc="which optimizer")
    lr: float = field(1e-3, min=0, open_min=True)
    weight_decay: float = field(0.0, min=0)
    momentum: float = field(0.9, min=0, max=1)


@dataclass
class ScheduleConfig:
    """The learning-rate schedule of a phase, over its epochs."""

    name: Literal["none", "cosine", "plateau"] = field("none", doc="none, cosine annealing, or lower on a plateau")
    patience: int = field(2, min=0, doc="plateau: epochs without improvement before lowering the LR")
    factor: float = field(0.5, min=0, max=1, open_min=True, doc="plateau: LR multiplier")


@dataclass
class PhaseConfig:
    """What every training phase (baseline, retraining, fine-tuning) shares."""

    optimizer: OptimizerConfig = field(OptimizerConfig())
    schedule: ScheduleConfig = field(ScheduleConfig())
    grad_clip: float | None = field(None, min=0, open_min=True)
    max_bad_batches: int = field(5, min=1, doc="abort after this many non-finite losses in a row")


@dataclass
class LossScheduleConfig:
    """Task-loss weights that move linearly over the epochs of a phase.

    ``ramp`` maps a task loss to ``[factor at epoch 0, factor from epoch `epochs` on]``; its
    configured weight is multiplied by the factor. RITnet's schedule (Chaudhary et al. 2019), Dice
    fading out while the surface loss fades in, is ``ramp: {generalized_dice: [1, 0], surface: [0, 1]}``.
    """

    epochs: int = field(125, min=1, doc="epochs over which each factor moves from its start to its end")
    ramp: dict[str, list[float]] = field({}, doc="task loss -> [start factor, end factor]")

    def check(self, path: str) -> None:
        for name, ends in self.ramp.items():
            if len(ends) != 2 or any(not 0 <= v < float("inf") for v in ends):
                raise ConfigError(f"{path}.ramp.{name}: {ends!r} must be two finite factors >= 0, [start, end]")

    def factor(self, name: str, epoch: int) -> float:
        """The multiplier of task loss ``name`` in ``epoch`` (0-based) of a phase."""
        if name not in self.ramp:
            return 1.0
        start, end = self.ramp[name]
        return start + (end - start) * min(1.0, epoch / self.epochs)
