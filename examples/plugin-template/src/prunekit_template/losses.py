"""A task loss (soft Dice) and a distillation loss (mean squared difference of the logits)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.plugin import Outputs, Spec, field, hookimpl


class SoftDice(nn.Module):
    """1 − mean over classes of the soft Dice coefficient (Milletari et al. 2016)."""

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        probs = logits.softmax(1)
        target = F.one_hot(batch["target"], logits.shape[1]).movedim(-1, 1).to(probs.dtype)
        dims = (0, *range(2, probs.dim()))
        dice = (2 * (probs * target).sum(dims) + self.smooth) / ((probs + target).sum(dims) + self.smooth)
        return 1 - dice.mean()


@dataclass
class SoftDiceArgs:
    smooth: float = field(1.0, min=0, open_min=True)


class LogitMSE(nn.Module):
    """Mean squared difference between student and teacher logits: needs no feature taps."""

    taps: tuple[str, ...] = ()

    def forward(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        return F.mse_loss(student.logits, teacher.logits.detach())


@hookimpl
def prunekit_task_losses() -> list[Spec]:
    return [Spec("soft_dice", SoftDice, "soft Dice over classes; arg smooth (1)", SoftDiceArgs)]


@hookimpl
def prunekit_distillation_losses() -> list[Spec]:
    return [Spec("logit_mse", LogitMSE, "mean squared difference of the logits")]
