"""The segmentation task: per-pixel classes scored by IoU from a confusion matrix accumulated over
the validation set; cross-entropy by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from prunekit.plugin import NoArgs, Spec, hookimpl, metric_rows

from .calibration_loss import class_balanced_cross_entropy


class ConfusionMatrix:
    """Pixel counts of (true, predicted) class pairs, rows true, columns predicted.

    A class absent from both the ground truth and the predictions has no IoU or F1 (NaN) and is
    left out of the means: it was neither missed nor hallucinated, and scoring it 1 or 0 would
    move mIoU with the choice of evaluation images rather than the model. Pixels whose true label
    is outside ``[0, n_classes)`` (an ignore label such as 255) are not counted. ``state`` is the
    K×K count matrix, which processes add up.
    """

    def __init__(self, n_classes: int, device: torch.device | str | None = None) -> None:
        self.n_classes = n_classes
        self.state = torch.zeros(n_classes, n_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, batch: dict[str, Any]) -> None:
        """Add a batch: ``prediction`` is N×K×H×W logits/probabilities or N×H×W class indices."""
        mask = batch["target"]
        if prediction.dim() == mask.dim() + 1:
            prediction = prediction.argmax(1)
        k = self.n_classes
        valid = (mask >= 0) & (mask < k)
        pairs = mask[valid] * k + prediction[valid]
        self.state += torch.bincount(pairs, minlength=k * k).view(k, k).to(self.state.device)

    def _parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        counts = self.state.double()
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
        counts = self.state.double()
        return float(counts.diagonal().sum() / counts.sum())

    def compute(self) -> dict[str, float]:
        """``miou``, ``mean_f1``, ``pixel_accuracy`` and ``iou_<k>`` per class (NaN when empty)."""
        iou = self.iou()
        record = {
            "miou": float(iou.nanmean()),
            "mean_f1": float(self.f1().nanmean()),
            "pixel_accuracy": self.pixel_accuracy(),
        }
        record.update({f"iou_{k}": float(v) for k, v in enumerate(iou)})
        return record


class Segmentation:
    name = "segmentation"
    best_metric = "miou"
    best_label = "mIoU"
    class_metric = "iou_"
    default_loss: ClassVar[dict[str, float]] = {"cross_entropy": 1.0}

    def calibration_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return class_balanced_cross_entropy(logits, batch)

    def metric(self, n_classes: int, device: torch.device | str) -> ConfusionMatrix:
        return ConfusionMatrix(n_classes, device)

    def report_rows(
        self, baseline: dict[str, float], pruned: dict[str, float], class_names: Sequence[str]
    ) -> list[list[str]]:
        return metric_rows(baseline, pruned, [("miou", "mIoU")], ("iou_", "IoU"), class_names)


@hookimpl
def prunekit_tasks() -> list[Spec]:
    return [
        Spec(
            "segmentation", Segmentation, "per-pixel classes; mIoU and IoU per class; cross-entropy by default", NoArgs
        )
    ]
