"""The iterative pruning loop: calibrate → score → select → cut → retrain → evaluate → checkpoint.

``Pruner.from_config(cfg).run()`` is the whole job: baseline (loaded or trained), the loop until
the budget is met, a final fine-tune, the export and a summary. Every step is checkpointed
atomically; ``run(resume=True)`` continues from the last complete step and, because all
randomness of a step is derived from ``(seed, step)``, ends where an uninterrupted run ends.
"""
from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from . import checkpoint, distributed
from .calibration import calibrate, needs
from .config import Config, load as load_config
from .cost import CostReport, count
from .costmodel import CostModel
from .errors import CheckpointError, ConfigError
from .export import export
from .files import atomic_write_json, atomic_write_text, load_into, load_weights, save_weights
from .latency import measure
from .graph import ChannelGraph, trace
from .plan import Plan, apply_plan
from .plugin_manager import Manager, configure
from .report import kept_channels, write_report
from .runtime import RunData, build_data, resolve_device, seed_everything, step_seed
from .scoring import group_scores
from .selection import Budget, Limits, Reference, Selection, per_cost, select
from .surgery import remove
from .training import Trainer, evaluate


@dataclass
class Step:
    """What one pruning step did; the rows of the progress table and the JSONL log."""

    step: int
    macs: int
    params: int
    macs_percent: float
    params_percent: float
    removed: int
    at_limit: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"event": "step", **{k: v for k, v in self.__dict__.items() if k != "metrics"}, **self.metrics}


@dataclass
class Result:
    model: nn.Module
    plan: Plan
    steps: list[Step]
    summary: dict[str, Any]


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Pruner:
    """One run, driven by one validated :class:`Config`."""

    def __init__(self, config: Config, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = Path(config.run_dir)
        self.plugins: Manager = configure(config.plugins.load, config.plugins.disable, config.plugins.autoload)
        distributed.init()
        self.device = distributed.device_for(resolve_device(config.device))
        self.model: nn.Module | None = None
        self.teacher: nn.Module | None = None
        self.plan = Plan()
        self.steps: list[Step] = []
        self.loggers: list[Any] = []

    @classmethod
    def from_config(cls, source: str | Path | dict | Config, progress: bool = True) -> Pruner:
        return cls(source if isinstance(source, Config) else load_config(source), progress)

    # -- the whole job ---------------------------------------------------------------------
    def run(self, resume: bool = False) -> Result:
        """Baseline → pruning loop → fine-tune → export → summary."""
        try:
            start = self.prepare(resume)
            self._loop(start)
            self._finetune()
            summary = self._finish()
        finally:
            self._close_loggers()
        return Result(self.model, self.plan, self.steps, summary)

    def prune(self, resume: bool = False) -> Result:
        """Only the pruning loop (with its retraining), for ``prunekit prune``."""
        try:
            start = self.prepare(resume)
            self._loop(start)
        finally:
            self._close_loggers()
        return Result(self.model, self.plan, self.steps, self._summary())

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self, resume: bool = False) -> int:
        cfg = self.config
        seed_everything(cfg.seed)
        self._guard_run_dir(resume)
        self.data: RunData = build_data(cfg, self.plugins)
        self.loggers = [self.plugins.get("logger", name, run_dir=self.run_dir) for name in cfg.logging] \
            if distributed.is_main() else []
        self.teacher = self._baseline(resume)
        self.teacher_hash = weights_hash(self.teacher)
        self.example = self._example_input()
        self.original = self._count(self.teacher)
        self.reference = Reference.of(self._trace(self.teacher))
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.trainer = Trainer(cfg, self.teacher, self.data, self.device, self.loggers, self.plugins, self.progress)
        last = checkpoint.load_last(self.run_dir) if resume else None
        self.model = self._fresh_model() if last is None else self._restore(last)
        self.model.to(self.device)
        if last is None and distributed.is_main():
            self.plugins.notify("run_started", run=self)
        return 1 if last is None else last.step + 1

    def _guard_run_dir(self, resume: bool) -> None:
        saved = self.run_dir / "config.yaml"
        resolved = yaml.safe_dump(self.config.to_dict(), sort_keys=True)
        if resume:
            if saved.is_file() and saved.read_text() != resolved:
                raise ConfigError(f"the config differs from the one {str(self.run_dir)!r} was started with; "
                                  "resume with the same config or start a new run_dir")
        elif saved.exists():
            raise ConfigError(f"run directory {str(self.run_dir)!r} already holds a run; "
                              "pass --resume to continue it, or choose another run_dir")
        distributed.barrier()  # every process has checked before the first one writes
        if distributed.is_main():
            atomic_write_text(saved, resolved)

    def _build(self) -> nn.Module:
        return self.plugins.get("model", self.config.model.name, **self.config.model.args)

    def _baseline(self, resume: bool) -> nn.Module:
        """The unpruned teacher: the given checkpoint, the saved baseline, or trained now."""
        cfg = self.config
        model, path = self._build(), self.run_dir / "baseline.safetensors"
        if resume and path.is_file():
            load_into(model, load_weights(path), str(path))
        elif cfg.model.checkpoint:
            load_into(model, load_weights(Path(cfg.model.checkpoint)), f"model.checkpoint {cfg.model.checkpoint!r}")
        elif cfg.train.epochs:
            Trainer(cfg, None, self.data, self.device, self.loggers, self.plugins, self.progress).fit(
                model, "train", cfg.train, cfg.train.epochs, seed=cfg.seed)
        if distributed.is_main():
            save_weights(path, model)
        distributed.barrier()
        return model.to(self.device).eval()

    def _fresh_model(self) -> nn.Module:
        model = copy.deepcopy(self.teacher)
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def _restore(self, last: checkpoint.Checkpoint) -> nn.Module:
        model = apply_plan(self._build(), last.plan)
        load_into(model, last.weights, f"checkpoint step {last.step}")
        self.plan = last.plan
        self.steps = [Step(**s) for s in last.state.get("steps", [])]
        return model

    def _example_input(self) -> torch.Tensor:
        if self.config.input_size:
            return torch.zeros(self.config.input_size)
        return self.data.val[0]["image"][None].clone()

    def _count(self, model: nn.Module):
        cost = self.config.cost
        return count(model, self.example, overrides=cost.overrides, include=cost.include or None)

    def _trace(self, model: nn.Module) -> ChannelGraph:
        cfg = self.config
        return trace(model, self.example, protected=cfg.pruning.protected, overrides=cfg.cost.overrides,
                     include=cfg.cost.include or None)

    # -- the loop ----------------------------------------------------------------------------
    def _targets(self) -> tuple[float, float]:
        p = self.config.pruning
        keep = 1.0 - p.prune_away_percent / 100.0
        floor_macs = keep * self.original.macs if p.resource == "macs" else 0.0
        floor_params = keep * self.original.params if p.resource == "params" else 0.0
        return max(floor_macs, p.min_macs or 0), max(floor_params, p.min_params or 0)

    def _budget(self) -> Budget:
        step = self.config.pruning.step
        floor_macs, floor_params = self._targets()
        if step.kind == "percent":
            resource = self.config.pruning.resource
            total = self.original.macs if resource == "macs" else self.original.params
            return Budget(resource, step.percent / 100.0 * total, floor_macs, floor_params)
        return Budget(step.kind, step.amount, floor_macs, floor_params)

    def done(self, macs: int, params: int) -> bool:
        floor_macs, floor_params = self._targets()
        return macs <= floor_macs or params <= floor_params

    def _loop(self, start: int) -> None:
        cfg = self.config
        current = self._count(self.model)
        step = start
        while step <= cfg.pruning.max_steps and not self.done(current.macs, current.params):
            began = time.perf_counter()
            selection = self._select(step)
            if not selection.removal:
                self._log({"event": "stop", "step": step, "message": _stop_message(selection)})
                break
            current = self._apply(selection)
            metrics = self._retrain_and_evaluate(step)
            record = Step(step, current.macs, current.params, 100.0 * current.macs / self.original.macs,
                          100.0 * current.params / self.original.params, selection.filters,
                          len(selection.at_limit), time.perf_counter() - began, metrics)
            self.steps.append(record)
            self._check_ranks_agree(record)
            if distributed.is_main():
                checkpoint.save(self.run_dir, step, self.model, self.plan, {"steps": [s.__dict__ for s in self.steps]})
                self._log(record.record())
                self.plugins.notify("step_done", run=self, record=record.record())
            distributed.barrier()
            step += 1

    def _select(self, step: int) -> Selection:
        cfg, p = self.config, self.config.pruning
        graph = self._trace(self.model)
        criteria = {name: (self.plugins.get("criterion", name, **p.criterion.args.get(name, {})), weight)
                    for name, weight in p.criterion.resolved().items()}
        if needs({n: c for n, (c, _) in criteria.items()}) & {"activations", "gradients"}:
            calibrate(self.model, graph, {n: c for n, (c, _) in criteria.items()},
                      self.data.calibration(p.calibration_batches, step_seed(cfg.seed, step)),
                      loss=self.trainer.task_loss, device=self.device, progress=self.progress, tap=p.activations_at)
            for criterion, _ in criteria.values():
                if distributed.active() and hasattr(criterion, "all_reduce"):
                    criterion.all_reduce(distributed.all_reduce_sum)
        self._graph = graph
        if not distributed.is_main():  # rank 0 selects; everyone cuts the same channels
            return distributed.broadcast(None)
        scores, cost = group_scores(graph, criteria, p.criterion.normalize, p.criterion.reduce), CostModel(graph)
        if p.criterion.per_cost != "none":
            scores = per_cost(scores, cost, p.criterion.per_cost, p.criterion.element_macs)
        limits = Limits(p.layer_limit_percent, p.block_limit_percent, p.min_channels, p.round_to)
        return distributed.broadcast(select(graph, scores, cost, self.reference, limits, self._budget()))

    def _apply(self, selection: Selection) -> CostReport:
        self.plan = self.plan.then(remove(self.model, self._graph, selection.removal))
        self.model.to(self.device)
        return self._count(self.model)

    def _retrain_and_evaluate(self, step: int) -> dict[str, float]:
        """Retrain (validation after each epoch) or, one-shot, just validate."""
        retrain, metrics = self.config.retrain, {}
        if retrain != "none" and retrain.epochs_per_step:
            metrics = self.trainer.fit(self.model, "retrain", retrain, retrain.epochs_per_step,
                                       seed=step_seed(self.config.seed, step), step=step)
        if not metrics and self.data.val is not None:
            metrics = evaluate(self.model, self.data, self.device, self.progress)
        return metrics

    def _finetune(self) -> None:
        ft = self.config.finetune
        if ft.epochs:
            self.trainer.fit(self.model, "finetune", ft, ft.epochs, seed=step_seed(self.config.seed, 10_000))

    def _check_ranks_agree(self, record: Step) -> None:
        """Every process must hold the same plan and weights after a step; stop if not."""
        if not distributed.active():
            return
        digest = hashlib.sha256((self.plan.to_json() + weights_hash(self.model)).encode()).hexdigest()
        digests = distributed.gather(digest)
        record.metrics["ranks_identical"] = float(len(set(digests)) == 1)
        if len(set(digests)) != 1:
            raise CheckpointError(f"step {record.step}: the processes disagree on the pruned model "
                                  f"({len(set(digests))} different states); the last checkpoint is kept")

    # -- the end ---------------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        final = self._count(self.model)
        teacher_after = weights_hash(self.teacher)
        if teacher_after != self.teacher_hash:
            raise RuntimeError("the teacher's weights changed during the run; this is a bug, please report it")
        self._final = final
        traversal = self.plugins.traversal(self.teacher)
        kept = kept_channels(self.original, final, traversal.blocks if traversal else ())
        return {
            "event": "summary",
            "macs": final.macs, "params": final.params,
            "original_macs": self.original.macs, "original_params": self.original.params,
            "macs_percent": 100.0 * final.macs / self.original.macs,
            "params_percent": 100.0 * final.params / self.original.params,
            "steps": len(self.steps), "filters_removed": self.plan.removed,
            "teacher_hash_before": self.teacher_hash, "teacher_hash_after": teacher_after,
            "kept": [k.__dict__ for k in kept],
        }

    def _finish(self) -> dict[str, Any]:
        summary = self._summary()
        if self.data.val is not None:
            summary["baseline_metrics"] = evaluate(self.teacher, self.data, self.device, self.progress)
            summary["metrics"] = evaluate(self.model, self.data, self.device, self.progress)
        if distributed.is_main():
            summary["latency"] = self._latency()
            summary["class_names"] = list(self.data.splits.class_names)
            summary["input_size"] = list(self.example.shape)
            summary["blocks"] = {"baseline": {b.name: b.macs for b in self.original.blocks},
                                 "pruned": {b.name: b.macs for b in self._final.blocks}}
            export(self.run_dir / "export", self.config, self.model, self.plan)
            atomic_write_json(self.run_dir / "summary.json", summary)
            write_report(self.run_dir)
            self._log({k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
            self.plugins.notify("run_finished", run=self, summary=summary)
        distributed.barrier()
        return summary

    def _latency(self) -> dict[str, float]:
        """Measured CPU or GPU seconds per forward, baseline and pruned, batch 1 and a full batch."""
        out = {}
        one = self.example[:1]
        for batch in sorted({1, self.data.batch_size}):
            x = one.expand(batch, *one.shape[1:]).contiguous().to(self.device)
            base, pruned = measure([self.teacher, self.model], x, repeats=10)
            out[f"baseline_batch{batch}"], out[f"pruned_batch{batch}"] = base, pruned
        return out

    def _log(self, record: dict[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(record)

    def _close_loggers(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []


def _stop_message(selection: Selection) -> str:
    limited = f" ({len(selection.at_limit)} layers or blocks at their limit)" if selection.at_limit else ""
    return ("nothing more can be removed: every remaining channel is protected, needed by the minimum "
            f"channel count, or in a layer or block at its limit{limited}; keeping the result so far")
