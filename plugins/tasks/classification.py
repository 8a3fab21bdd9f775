"""The classification task: one class per image, scored by top-1 and top-5 accuracy and the
accuracy of each class; cross-entropy with label smoothing by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from prunekit.plugin import NoArgs, Spec, hookimpl, metric_rows


class Accuracy:
    """Counts over the validation set: ``state`` = [top-1 hits, top-5 hits, samples, hits per
    class…, samples per class…], which processes add up."""

    def __init__(self, n_classes: int, device: torch.device | str | None = None) -> None:
        self.n_classes = n_classes
        self.state = torch.zeros(3 + 2 * n_classes, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        target = batch["target"].reshape(-1).long()
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 = ranked[:, 0] == target
        top5 = (ranked == target[:, None]).any(1)
        k = self.n_classes
        per_class = torch.bincount(target[top1], minlength=k)[:k], torch.bincount(target, minlength=k)[:k]
        counts = torch.stack([top1.sum(), top5.sum(), torch.tensor(len(target), device=target.device)])
        self.state += torch.cat([counts, *per_class]).to(self.state)

    def compute(self) -> dict[str, float]:
        """``top1``, ``top5`` (with more than 5 classes: fewer make it 1), ``mean_class_accuracy``
        and ``acc_<k>`` per class (NaN when absent)."""
        k = self.n_classes
        total = self.state[2]
        per_class = self.state[3 : 3 + k] / self.state[3 + k :]
        record = {
            "top1": float(self.state[0] / total),
            **({"top5": float(self.state[1] / total)} if k > 5 else {}),
            "mean_class_accuracy": float(per_class.nanmean()),
        }
        record.update({f"acc_{c}": float(v) for c, v in enumerate(per_class)})
        return record


class Classification:
    name = "classification"
    best_metric = "top1"
    best_label = "top-1"
    class_metric = "acc_"
    default_loss: ClassVar[dict[str, Any]] = {"cross_entropy": {"weight": 1.0, "args": {"label_smoothing": 0.1}}}
    # the filter-norm half of the default mix ranks by size, which a classifier's accuracy depends on
    # less than the loss does (docs/benchmarks.md, "Which pruning keeps the most accuracy")
    default_criterion: ClassVar[dict[str, float]] = {"taylor": 1.0}

    def metric(self, n_classes: int, device: torch.device | str) -> Accuracy:
        return Accuracy(n_classes, device)

    def report_rows(
        self, baseline: dict[str, float], pruned: dict[str, float], class_names: Sequence[str]
    ) -> list[list[str]]:
        summary = [("top1", "top-1"), ("top5", "top-5"), ("mean_class_accuracy", "mean class accuracy")]
        summary = [(key, label) for key, label in summary if key in baseline and key in pruned]
        return metric_rows(baseline, pruned, summary, ("acc_", "accuracy"), class_names)


@hookimpl
def prunekit_tasks() -> list[Spec]:
    return [Spec("classification", Classification, "one class per image; top-1, top-5, accuracy per class", NoArgs)]
