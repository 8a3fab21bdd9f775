"""Training, retraining between pruning steps and fine-tuning, with distillation from the teacher.

The loss is the weighted sum of the configured task losses plus, when a teacher is given, the
weighted distillation losses (IPAD: ``α_d·T²·KD + β·AT + λ·FSP``). The teacher stays frozen in
eval mode; features are tapped by module path with forward hooks on student and teacher.
"""
from __future__ import annotations

import copy
import math
import warnings
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .config import Config
from .errors import ConfigError, PrunekitError, suggest
from .metrics import ConfusionMatrix
from .plugin_manager import Manager
from .recording import eval_mode
from .runtime import RunData, step_seed, to_device
from .types import Outputs


class TrainingError(PrunekitError):
    """Training cannot go on (the loss kept being NaN or infinite)."""


def evaluate(model: nn.Module, data: RunData, device: torch.device, progress: bool = True) -> dict[str, float]:
    """Validation metrics: ``miou``, ``mean_f1``, ``pixel_accuracy``, ``iou_<k>``."""
    matrix = ConfusionMatrix(data.n_classes, device=device)
    with eval_mode(model), torch.no_grad():
        for batch in tqdm(data.loader(data.val, None), desc="validate", leave=False, disable=not progress):
            matrix.update(model(batch["image"].to(device)), batch["mask"].to(device))
    distributed.all_reduce_sum(matrix.counts)  # every process scored its share of the images
    return matrix.summary()


def ritnet_weights(epoch: int, epochs: int) -> tuple[float, float]:
    """RITnet's schedule (Chaudhary et al. 2019): the Dice weight falls from 1 to 0 over ``epochs``
    while the surface-loss weight rises from 0 to 1."""
    alpha = max(0.0, 1.0 - epoch / max(1, epochs))
    return alpha, 1.0 - alpha


class Taps:
    """Forward hooks that keep the outputs of the named modules of one network."""

    def __init__(self, model: nn.Module, paths: list[str]) -> None:
        modules = dict(model.named_modules())
        for path in paths:
            if path not in modules:
                raise ConfigError(f"distillation tap {path!r} is not a module of the model; {suggest(path, modules)}")
        self.features: dict[str, torch.Tensor] = {}
        self.handles = [modules[p].register_forward_hook(self._keep(p)) for p in paths]

    def _keep(self, path: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self.features[path] = output if torch.is_tensor(output) else output[0]
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class Trainer:
    """Trains a model for some epochs; one instance serves every phase of a run."""

    def __init__(self, cfg: Config, teacher: nn.Module | None, data: RunData, device: torch.device,
                 loggers: list[Any], plugins: Manager, progress: bool = True) -> None:
        self.cfg, self.teacher, self.data, self.device = cfg, teacher, data, device
        self.loggers, self.plugins, self.progress = loggers, plugins, progress
        self.losses = {n: (plugins.get("task_loss", n, **t.args), t.weight) for n, t in cfg.loss.items()}
        self.distill = self._distillation_losses()
        default_taps = tuple(getattr(plugins.traversal(teacher), "taps", ())) if teacher is not None else ()
        # each loss sees its own taps, in forward order; the hooks serve their union
        self.loss_taps = {n: tuple(loss.taps) if loss.taps is not None else default_taps
                          for n, (loss, _) in self.distill.items()}
        self.taps = sorted({p for taps in self.loss_taps.values() for p in taps})
        self.epoch_weights = (1.0, 1.0)

    def _distillation_losses(self) -> dict[str, tuple[nn.Module, float]]:
        if self.teacher is None:
            return {}
        return {n: (self.plugins.get("distillation", n, **t.args).to(self.device), t.weight)
                for n, t in self.cfg.distillation.items()}

    # -- losses ----------------------------------------------------------------------------
    def task_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        dice_w, surface_w = self.epoch_weights
        total = logits.new_zeros(())
        for name, (loss, weight) in self.losses.items():
            factor = dice_w if name == "generalized_dice" else surface_w if name == "surface" else 1.0
            if weight * factor:
                total = total + weight * factor * loss(logits, batch)
        return total

    def distill_loss(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        total = student.logits.new_zeros(())
        for name, (loss, weight) in self.distill.items():
            if weight:
                total = total + weight * loss(*self._own(name, student, teacher))
        return total

    def _own(self, name: str, student: Outputs, teacher: Outputs) -> tuple[Outputs, Outputs]:
        taps = self.loss_taps[name]
        return (Outputs(student.logits, {p: student.features[p] for p in taps}),
                Outputs(teacher.logits, {p: teacher.features[p] for p in taps}))

    # -- training --------------------------------------------------------------------------
    def fit(self, model: nn.Module, phase: str, phase_cfg: Any, epochs: int, seed: int, step: int | None = None) -> dict:
        """Train ``model`` in place for ``epochs``; keep the weights of the best validation mIoU."""
        model.to(self.device)
        # fresh losses every phase: adapters start from the current student, so a resumed run
        # trains exactly what an uninterrupted one does
        self.distill = self._distillation_losses()
        student_taps = Taps(model, self.taps) if self.distill else None
        teacher_taps = Taps(self.teacher, self.taps) if self.distill else None
        try:
            self._setup_distillation(model, student_taps, teacher_taps, seed)
            extra = [p for loss, _ in self.distill.values() for p in loss.parameters()]
            optimizer = _optimizer(phase_cfg.optimizer, list(model.parameters()) + extra)
            net = nn.parallel.DistributedDataParallel(model) if distributed.active() else model
            scheduler = _scheduler(phase_cfg.schedule, optimizer, epochs)
            best, best_state, best_metrics = -math.inf, None, {}
            for epoch in range(epochs):
                self.epoch_weights = self._schedule(epoch)
                loss = self._epoch(net, optimizer, phase_cfg, student_taps, teacher_taps, extra,
                                   step_seed(seed, epoch), f"{phase} {epoch + 1}/{epochs}")
                last = evaluate(model, self.data, self.device, self.progress) if self.data.val is not None else {}
                record = {"event": "epoch", "phase": phase, "epoch": epoch + 1, "loss": loss,
                          "lr": optimizer.param_groups[0]["lr"], **({"step": step} if step else {}), **last}
                self._log(record)
                score = last.get("miou", -loss)
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(score)
                elif scheduler is not None:
                    scheduler.step()
                if score > best:
                    best, best_state, best_metrics = score, copy.deepcopy(model.state_dict()), last
            if best_state is not None:
                model.load_state_dict(best_state)
            distributed.sync_buffers(model)
            return best_metrics
        finally:
            for taps in (student_taps, teacher_taps):
                if taps:
                    taps.remove()

    def _schedule(self, epoch: int) -> tuple[float, float]:
        schedule = self.cfg.loss_schedule
        return ritnet_weights(epoch, schedule.epochs) if schedule.name == "ritnet" else (1.0, 1.0)

    def _setup_distillation(self, model: nn.Module, student_taps: Taps | None, teacher_taps: Taps | None, seed: int) -> None:
        """Let distillation losses build adapters for the student's current channel counts."""
        if not self.distill:
            return
        batch = next(iter(self.data.loader(self.data.train, seed)))
        with torch.no_grad():
            student, teacher = self._outputs(model, batch, student_taps, teacher_taps, train=False)
        for name, (loss, _) in self.distill.items():
            if hasattr(loss, "setup"):
                loss.setup(*self._own(name, student, teacher))
            loss.to(self.device)

    def _outputs(self, model: nn.Module, batch: dict, student_taps: Taps | None, teacher_taps: Taps | None,
                 train: bool) -> tuple[Outputs, Outputs | None]:
        image = batch["image"].to(self.device)
        was = model.training
        model.train(train)
        logits = model(image)
        model.train(was)
        student = Outputs(logits, dict(student_taps.features) if student_taps else {})
        if not self.distill:
            return student, None
        with torch.no_grad():
            t_logits = self.teacher(image)
        return student, Outputs(t_logits, dict(teacher_taps.features))

    def _epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, phase_cfg: Any, student_taps: Taps | None,
               teacher_taps: Taps | None, extra: list[nn.Parameter], seed: int, desc: str) -> float:
        model.train()
        total, batches, bad = 0.0, 0, 0
        for batch in tqdm(self.data.loader(self.data.train, seed), desc=desc, leave=False, disable=not self.progress):
            with self._autocast():
                student, teacher = self._outputs(model, batch, student_taps, teacher_taps, train=True)
                batch_dev = to_device(batch, self.device)
                loss = self.task_loss(student.logits.float(), batch_dev)
                if teacher is not None:
                    loss = loss + self.distill_loss(student, teacher)
            if not _finite_everywhere(loss):
                bad += 1
                warnings.warn(f"{desc}: non-finite loss ({loss.item()}), batch skipped", RuntimeWarning, stacklevel=2)
                if bad >= phase_cfg.max_bad_batches:
                    raise TrainingError(f"{desc}: the loss was not finite for {bad} batches in a row; "
                                        "lower the learning rate or enable grad_clip (the last complete "
                                        "checkpoint is kept)")
                optimizer.zero_grad(set_to_none=True)
                continue
            bad = 0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _average_gradients(extra)  # adapters live outside the DDP-wrapped student
            if phase_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), phase_cfg.grad_clip)
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        mean = distributed.all_reduce_sum(torch.tensor([total, batches], dtype=torch.float64))
        return float(mean[0] / mean[1].clamp_min(1))

    def _autocast(self):
        # bf16 needs no loss scaling; without it, stay in fp32
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _log(self, record: dict[str, Any]) -> None:
        if distributed.is_main():
            for logger in self.loggers:
                logger.log(record)
            self.plugins.notify("epoch_done", run=self, record=record)


def _finite_everywhere(loss: torch.Tensor) -> bool:
    """Whether every process's loss is finite: under DDP all must skip a batch together."""
    bad = distributed.all_reduce_sum(torch.tensor([0.0 if torch.isfinite(loss) else 1.0]))
    return float(bad[0]) == 0.0


def _average_gradients(params: list[nn.Parameter]) -> None:
    if distributed.active():
        for p in params:
            if p.grad is not None:
                distributed.all_reduce_sum(p.grad).div_(distributed.world())


def _optimizer(cfg: Any, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: Any, optimizer: torch.optim.Optimizer, epochs: int):
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if cfg.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=cfg.patience, factor=cfg.factor)
    return None
