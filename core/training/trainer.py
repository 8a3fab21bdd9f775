"""Training, retraining between pruning steps and fine-tuning, with distillation from the teacher.

The loss is the weighted sum of the task losses plus, when a teacher is given, the weighted
distillation losses (IPAD: ``α_d·T²·KD + β·AT + λ·FSP``). The teacher stays frozen in eval mode;
features are tapped by module path with forward hooks on student and teacher.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..errors import ConfigError, TrainingError
from ..failures import failing_as, numbered
from ..modes import eval_mode
from ..plugin.protocols import Metric, Task
from ..progress import bar
from ..records import to_device
from .data import TrainingData
from .distiller import Distiller, Taps, Teacher, loss_taps
from .seeds import step_seed
from .settings import LossScheduleConfig, OptimizerConfig, PhaseConfig, ScheduleConfig

TaskLoss = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]
#: batches whose losses set the distillation scales of ``balance: auto``
BALANCE_BATCHES = 4


def evaluate(
    model: nn.Module, batches: Iterable[dict[str, Any]], metric: Metric, device: torch.device, progress: bool = True
) -> dict[str, float]:
    """The task's validation metrics of ``model``, summed over every process's share of the batches."""
    with eval_mode(model), torch.no_grad():
        for index, batch in numbered(bar(batches, "validate", progress), "validate"):
            on_device = to_device(batch, device)
            with failing_as(f"validate, batch {index}"):
                metric.update(model(on_device["image"]), on_device)
    distributed.all_reduce_sum(metric.state)
    return metric.compute()


@dataclass
class Objective:
    """What the student minimises: task losses (name -> (loss, weight)), their weights over the
    epochs of a phase, and distillation losses against the teacher, built afresh for every phase
    by ``distillation()`` so that a resumed run trains exactly what an uninterrupted one does."""

    task_losses: dict[str, tuple[TaskLoss, float]]
    schedule: LossScheduleConfig = field(default_factory=LossScheduleConfig)
    distillation: Callable[[], dict[str, tuple[nn.Module, float]]] = dict
    #: ``auto``: each phase scales every distillation term so that on its first batches it is the
    #: task loss times the term's weight (``none``: the weights multiply the raw terms)
    balance: str = "none"

    def task_terms(self, logits: torch.Tensor, batch: dict[str, Any], epoch: int = 0) -> dict[str, torch.Tensor]:
        """Each task loss, weighted as it enters the total (terms whose weight is 0 now are left out)."""
        terms = {}
        for name, (loss, weight) in self.task_losses.items():
            factor = weight * self.schedule.factor(name, epoch)
            if factor:
                terms[name] = factor * loss(logits, batch)
        return terms

    def task_loss(self, logits: torch.Tensor, batch: dict[str, Any], epoch: int = 0) -> torch.Tensor:
        return sum(self.task_terms(logits, batch, epoch).values(), logits.new_zeros(()))


class Trainer:
    """Trains a model for some epochs; one instance serves every phase of a run.

    ``on_epoch(trainer, record)`` receives a flat record after every epoch (phase, epoch, loss, lr
    and the task's validation metrics). A batch whose loss is not finite is skipped and leaves the
    model as it was (BatchNorm statistics included); ``max_bad_batches`` of them in a row — across
    epochs and phases — end training with :class:`~prunekit.TrainingError`.
    """

    def __init__(
        self,
        objective: Objective,
        data: TrainingData,
        task: Task,
        device: torch.device,
        on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.objective, self.data, self.task, self.device = objective, data, task, device
        self.on_epoch, self.progress = on_epoch, progress
        self.bad_in_row = 0

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics, or ``{}`` without validation data."""
        batches = self.data.val_batches()
        if batches is None:
            return {}
        return evaluate(model, batches, self.task.metric(self.data.n_classes, self.device), self.device, self.progress)

    def fit(
        self,
        model: nn.Module,
        phase: str,
        settings: PhaseConfig,
        epochs: int,
        seed: int,
        step: int | None = None,
        teacher: Teacher | None = None,
    ) -> dict[str, float]:
        """Train ``model`` in place for ``epochs`` (distilling from ``teacher`` if given); keep the
        weights of its best validation epoch."""
        model.to(self.device)
        distiller = self.distiller(model, teacher, seed) if teacher is not None else None
        try:
            extra = distiller.parameters() if distiller else []
            optimizer = _optimizer(settings.optimizer, list(model.parameters()) + extra)
            net: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed.active() else model
            scheduler = _scheduler(settings.schedule, optimizer, epochs)
            best, best_state, best_metrics = -math.inf, None, {}
            scales = {f"scale_{n}": v for n, v in distiller.scales.items()} if distiller else {}
            for epoch in range(epochs):
                desc = f"{phase} {epoch + 1}/{epochs}"
                trained = self._epoch(net, optimizer, settings, distiller, extra, epoch, step_seed(seed, epoch), desc)
                metrics = self.evaluate(model)
                record = {
                    "event": "epoch",
                    "phase": phase,
                    "epoch": epoch + 1,
                    **trained,
                    "lr": optimizer.param_groups[0]["lr"],
                    **({"step": step} if step else {}),
                    **scales,
                    **metrics,
                }
                if self.on_epoch:
                    self.on_epoch(self, record)
                score = metrics.get(self.task.best_metric, -trained["loss"])
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(score)
                elif scheduler is not None:
                    scheduler.step()
                if score > best:
                    best, best_state, best_metrics = score, copy.deepcopy(model.state_dict()), metrics
            if best_state is not None:
                model.load_state_dict(best_state)
            distributed.sync_buffers(model)
            return best_metrics
        finally:
            if distiller:
                distiller.remove()

    def distiller(self, model: nn.Module, teacher: Teacher, seed: int) -> Distiller | None:
        """Fresh distillation losses, their taps hooked, adapters built for the student's current
        channel counts (from one batch — of the training data, else of the validation data —
        before the optimizer is built); ``None`` without distillation losses."""
        losses = self.objective.distillation()
        if not losses:
            return None
        taps = {n: loss_taps(loss, teacher.taps) for n, (loss, _) in losses.items()}
        paths = sorted({p for tapped in taps.values() for p in tapped})
        for loss, _ in losses.values():
            loss.to(self.device)
        distiller = Distiller(teacher.model, losses, taps, Taps(model, paths), Taps(teacher.model, paths))
        try:
            source = self.data.train_batches(seed) if self.data.has_train else self.data.val_batches()
            batches = itertools.islice(source if source is not None else (), BALANCE_BATCHES)
            first = next(batches, None)
            if first is None:
                raise ConfigError("distillation needs a batch to set its losses up; give training or validation data")
            batch = to_device(first, self.device)
            with torch.no_grad(), eval_mode(model):
                student, teacher_out = distiller.outputs(batch["image"], model(batch["image"]))
            for name, (loss, _) in losses.items():
                setup = getattr(loss, "setup", None)
                if setup is not None:
                    setup(*distiller.own(name, student, teacher_out))
                loss.to(self.device)
            if self.objective.balance == "auto":
                self._balance(model, distiller, [batch, *(to_device(b, self.device) for b in batches)])
        except BaseException:
            distiller.remove()
            raise
        return distiller

    @torch.no_grad()
    def _balance(self, model: nn.Module, distiller: Distiller, batches: list[dict[str, Any]]) -> None:
        """``balance: auto``: the task loss and each raw distillation loss, averaged over the
        phase's first batches (the student in eval mode), set the distillation scales."""
        task, raw = 0.0, dict.fromkeys(distiller.losses, 0.0)
        with eval_mode(model):
            for batch in batches:
                student, teacher = distiller.outputs(batch["image"], model(batch["image"]))
                task += float(self.objective.task_loss(student.logits.float(), batch)) / len(batches)
                for name, (loss, _) in distiller.losses.items():
                    raw[name] += float(loss(*distiller.own(name, student, teacher))) / len(batches)
        distiller.balance(task, raw)

    def _epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        settings: PhaseConfig,
        distiller: Distiller | None,
        extra: list[nn.Parameter],
        epoch: int,
        seed: int,
        desc: str,
    ) -> dict[str, float]:
        """One epoch; returns the mean loss, each weighted term's mean (``loss_<task loss>``,
        ``distill_<loss>``) and the task's best metric on the training batches (``train_<metric>``)."""
        model.train()
        sums: dict[str, float] = defaultdict(float)
        finite, seen = 0, 0
        metric = self.task.metric(self.data.n_classes, self.device)
        for index, cpu_batch in numbered(bar(self.data.train_batches(seed), desc, self.progress), desc):
            batch = to_device(cpu_batch, self.device)
            buffers = [b.detach().clone() for b in model.buffers()]  # the forward updates BN statistics
            with self._autocast(), failing_as(f"{desc}, batch {index}"):
                logits = model(batch["image"])
                terms = {f"loss_{n}": t for n, t in self.objective.task_terms(logits.float(), batch, epoch).items()}
                if distiller is not None:
                    outputs = distiller.outputs(batch["image"], logits)
                    terms |= {f"distill_{n}": t for n, t in distiller.terms(*outputs).items()}
                loss = sum(terms.values(), logits.new_zeros((), dtype=torch.float32))
            seen += 1
            if not _finite_everywhere(loss):
                _restore(model.buffers(), buffers)
                self._skip(desc, loss, settings.max_bad_batches)
                continue
            self.bad_in_row = 0
            optimizer.zero_grad(set_to_none=True)
            with failing_as(f"{desc}, batch {index} (backward)"):
                loss.backward()
            _average_gradients(extra)  # adapters live outside the DDP-wrapped student
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            finite += 1
            metric.update(logits.detach().float(), batch)
            for name, value in {"loss": loss, **terms}.items():
                sums[name] += float(value.detach())
        return self._epoch_means(desc, sums, finite, seen, metric)

    def _epoch_means(
        self, desc: str, sums: dict[str, float], finite: int, seen: int, metric: Metric
    ) -> dict[str, float]:
        """Every process's sums added up, as means over the batches with a finite loss."""
        names = sorted(sums)
        totals = distributed.all_reduce_sum(
            torch.tensor([finite, seen, *(sums[n] for n in names)], dtype=torch.float64)
        )
        if totals[1] and not totals[0]:
            raise TrainingError(
                f"{desc}: no batch of the epoch had a finite loss (the last complete checkpoint is kept)"
            )
        distributed.all_reduce_sum(metric.state)
        means = {n: float(v / totals[0].clamp_min(1)) for n, v in zip(names, totals[2:])}
        best = {f"train_{k}": v for k, v in metric.compute().items() if k == self.task.best_metric}
        return {"loss": means.pop("loss", 0.0), **means, **best}

    def _skip(self, desc: str, loss: torch.Tensor, max_bad_batches: int) -> None:
        self.bad_in_row += 1
        warnings.warn(f"{desc}: non-finite loss ({loss.item()}), batch skipped", RuntimeWarning, stacklevel=3)
        if self.bad_in_row >= max_bad_batches:
            raise TrainingError(
                f"{desc}: the loss was not finite for {self.bad_in_row} batches in a row; lower the learning "
                "rate or enable grad_clip (the last complete checkpoint is kept)"
            )

    def _autocast(self) -> AbstractContextManager[Any]:
        # bf16 needs no loss scaling; without it, stay in fp32
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def _restore(buffers: Iterable[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)


def _finite_everywhere(loss: torch.Tensor) -> bool:
    """Whether every process's loss is finite: under DDP all must skip a batch together."""
    bad = distributed.all_reduce_sum(torch.tensor([0.0 if torch.isfinite(loss) else 1.0]))
    return float(bad[0]) == 0.0


def _average_gradients(params: list[nn.Parameter]) -> None:
    if distributed.active():
        for p in params:
            if p.grad is not None:
                distributed.all_reduce_sum(p.grad).div_(distributed.world())


def _optimizer(cfg: OptimizerConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if cfg.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", patience=cfg.patience, factor=cfg.factor
        )
    return None
