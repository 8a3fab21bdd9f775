"""Segmentation metrics from a confusion matrix accumulated over batches.

The state is one K×K tensor of pixel counts (rows: true class, columns: predicted class), so
processes can sum their matrices (``torch.distributed.all_reduce(cm.counts)`` or ``merge``).
"""
from __future__ import annotations

import torch


class ConfusionMatrix:
    """Pixel counts of (true, predicted) class pairs.

    A class absent from both the ground truth and the predictions has no IoU or F1 (NaN) and is
    left out of the means: it was neither missed nor hallucinated, and scoring it 1 or 0 would
    move mIoU with the choice of evaluation images rather than the model. Pixels whose true label
    is outside ``[0, n_classes)`` (an ignore label such as 255) are not counted.
    """

    def __init__(self, n_classes: int, device: torch.device | str | None = None) -> None:
        self.n_classes = n_classes
        self.counts = torch.zeros(n_classes, n_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, mask: torch.Tensor) -> None:
        """Add a batch: ``prediction`` is N×K×H×W logits/probabilities or N×H×W class indices."""
        if prediction.dim() == mask.dim() + 1:
            prediction = prediction.argmax(1)
        k = self.n_classes
        valid = (mask >= 0) & (mask < k)
        pairs = mask[valid] * k + prediction[valid]
        self.counts += torch.bincount(pairs, minlength=k * k).view(k, k).to(self.counts.device)

    def merge(self, other: ConfusionMatrix | torch.Tensor) -> None:
        """Add another matrix's counts (another process's, another split's)."""
        counts = other.counts if isinstance(other, ConfusionMatrix) else other
        self.counts += counts.to(self.counts.device, torch.int64)

    def reset(self) -> None:
        self.counts.zero_()

    def _parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        counts = self.counts.double()
        tp = counts.diagonal()
        return tp, counts.sum(0) - tp, counts.sum(1) - tp  # tp, fp, fn

    def iou(self) -> torch.Tensor:
        """Per-class IoU = tp / (tp + fp + fn); NaN for classes absent from both."""
        tp, fp, fn = self._parts()
        return tp / (tp + fp + fn)

    def f1(self) -> torch.Tensor:
        """Per-class F1 (Dice) = 2tp / (2tp + fp + fn); NaN for classes absent from both."""
        tp, fp, fn = self._parts()
        return 2 * tp / (2 * tp + fp + fn)

    def pixel_accuracy(self) -> float:
        """Share of counted pixels predicted right; NaN before any pixel is counted."""
        counts = self.counts.double()
        return float(counts.diagonal().sum() / counts.sum())

    def summary(self) -> dict[str, float]:
        """``miou``, ``mean_f1``, ``pixel_accuracy`` and ``iou_<k>`` per class (NaN when empty)."""
        iou = self.iou()
        record = {"miou": float(iou.nanmean()), "mean_f1": float(self.f1().nanmean()),
                  "pixel_accuracy": self.pixel_accuracy()}
        record.update({f"iou_{k}": float(v) for k, v in enumerate(iou)})
        return record
