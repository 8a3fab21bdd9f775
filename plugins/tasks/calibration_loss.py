"""The loss the segmentation task gives gradient criteria (Taylor) in the calibration pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_balanced_cross_entropy(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """Cross-entropy averaged within each class present in the batch, then over those classes.

    With the plain per-pixel mean, a small class (an iris among skin) hardly moves
    the loss, so first-order Taylor scores the channels that serve it as unimportant and pruning
    can empty the class; here every present class weighs alike. Logits N×K (labels N) or
    N×K×H×W (masks N×H×W).
    """
    target = batch["target"].long()
    nll = F.cross_entropy(logits, target, reduction="none")
    per_class = [nll[target == c].mean() for c in target.unique()]
    return torch.stack(per_class).mean()
