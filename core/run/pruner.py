"""A run: the baseline, the pruning loop, a final fine-tune, the export and a summary.

``Pruner.from_config(cfg).run()`` is the whole job, with prunekit's own retraining after every
cut; ``for step in Pruner(...).steps(): ...`` hands each cut model to your training loop instead.
Every step is checkpointed atomically; ``resume=True`` continues from the last complete step and,
because all randomness of a step is derived from ``(seed, step)``, ends where an uninterrupted
run ends.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..cost.counting import CostReport, count
from ..cost.latency_table import LatencyTable
from ..cost.runtimes import runtime_named
from ..errors import CheckpointError
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.overrides import Overrides
from ..graph.traversal import traversal_of
from ..plugin.manager import Manager
from ..progress import bar
from ..pruning.latency_budget import LatencyBudget
from ..pruning.plan import apply_plan
from ..pruning.selection import Reference
from ..run_files import BASELINE, EXPORT, SUMMARY
from ..run_records import RunInfo
from ..seam import Runtime
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.seeds import seed_everything, step_seed
from ..training.trainer import Trainer
from .components import (
    GivenObjects,
    build_loggers,
    checked_trainer,
    example_input,
    retrain_function,
    start_weights,
    with_task_criterion,
)
from .config import Config, load_config
from .guard import Guard
from .loop import pruning_steps
from .pruned_step import PrunedStep
from .reporting.report import kept_layers, write_report
from .reporting.run_log import Console, RunLog
from .retraining import OwnLoop, retraining_for
from .speed import compared, measure_speed, slower
from .state import Result, RunState
from .storage import checkpoints, run_dir
from .storage.atomic_files import atomic_write_json
from .storage.export import export
from .storage.weights import load_into, load_weights, save_weights, weights_hash


class Pruner:
    """One run, driven by one validated :class:`Config` (or a YAML file or dict to load one from).

    Your own objects replace what the config would build: ``model`` (an ``nn.Module``, copied,
    never changed), ``train`` and ``val`` (iterables of batches such as DataLoaders; the config
    must then name the ``task``), ``loss`` (``loss(logits, target) -> scalar``),
    ``example_input``, and cost functions ``overrides`` / ``param_overrides`` as
    :func:`prunekit.count` takes them (they replace ``cost.overrides`` / ``cost.param_overrides``).
    A run resumed with ``run(resume=True)`` must be given the same objects.
    Nothing happens until :meth:`run` (or :meth:`prune`, :meth:`prepare`); ``plugins`` defaults
    to a manager for the config's ``plugins`` section.
    """

    def __init__(
        self,
        config: Config | str | Path | dict[str, Any] | None = None,
        progress: bool = True,
        plugins: Manager | None = None,
        *,
        model: nn.Module | None = None,
        train: Iterable[Any] | None = None,
        val: Iterable[Any] | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        example_input: torch.Tensor | None = None,
        overrides: Overrides | None = None,
        param_overrides: Overrides | None = None,
    ) -> None:
        self.config = config if isinstance(config, Config) else load_config(config, plugins)
        self.progress = progress
        self.plugins = plugins
        self.objects = GivenObjects(model, train, val, loss, example_input, overrides, param_overrides)
        self.run_dir = Path(self.config.run_dir)
        self.cost_functions = self.objects.cost_functions(self.config)

    @classmethod
    def from_config(cls, source: str | Path | dict | Config, progress: bool = True) -> Pruner:
        return cls(source if isinstance(source, Config) else load_config(source), progress)

    # -- the whole job ---------------------------------------------------------------------
    def run(self, resume: bool = False) -> Result:
        """Baseline → pruning loop with retraining → fine-tune → export → summary."""
        state = self.prepare(resume)
        try:
            self._loop(state)
            self._finetune(state)
            summary = self._finish(state)
        finally:
            state.log.close()
        return Result.of(state, summary)

    def prune(self, resume: bool = False) -> Result:
        """Only the pruning loop (with its retraining), for ``prunekit prune``."""
        state = self.prepare(resume)
        try:
            self._loop(state)
        finally:
            state.log.close()
        return Result.of(state, self._summary(state, self._count(state, state.model)))

    def steps(self, resume: bool = False) -> Iterator[PrunedStep]:
        """The pruning loop for your own training: after each cut, a :class:`PrunedStep` with the
        pruned model, the teacher, the distillation losses as a callable and the parameters to
        optimise. Train it your way, ``step.report(metric)`` (or let prunekit validate), and the
        loop goes on — the guard, checkpoints, resume, limits and budget as in :meth:`run`. When
        the loop ends the model is exported and reported; :attr:`result` holds the summary."""
        state = self.prepare(resume)
        try:
            own = OwnLoop(self.config, state.trainer, state.distil_from)
            yield from pruning_steps(state, functools.partial(self._count, state), own, self.progress)
            self.result = Result.of(state, self._finish(state))
        finally:
            state.log.close()

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self, resume: bool = False) -> RunState:
        """Join the process group, build the run's objects, and load or train the baseline."""
        cfg = self.config
        plugins = self.plugins or cfg.manager()
        distributed.init()
        if distributed.is_main():
            run_dir.refuse_if_held(self.run_dir)
        device = distributed.device_for(distributed.resolve_device(cfg.device))
        seed_everything(cfg.seed)
        # everything is built and checked before the run directory is claimed: only then write
        trainer = checked_trainer(cfg, plugins, device, self.progress, self.objects, self.cost_functions)
        data, task = trainer.data, trainer.task
        cfg = self.config = with_task_criterion(cfg, task)
        lock = run_dir.claim(self.run_dir, cfg, resume, self.objects.fingerprint())
        console = Console(task.best_metric, task.best_label) if self.progress else None
        try:
            log = RunLog(self.run_dir, plugins, build_loggers(cfg, self.run_dir, plugins), console, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        trainer.on_epoch = log.epoch
        try:
            runtime = runtime_named(cfg.pruning.runtime, plugins, device)
            teacher = self._baseline(plugins, trainer, device, resume)
            example = self._example(data)
            original = self._count_with(plugins, teacher, example)
            graph = self._trace_with(plugins, teacher, example)
            traversal = traversal_of(teacher, plugins, example)
            for p in teacher.parameters():
                p.requires_grad_(False)
            last = checkpoints.load_last(self.run_dir) if resume else None
            timing = self._timing(plugins, teacher, graph, device, runtime)
            state = RunState(
                cfg,
                self.run_dir,
                plugins,
                device,
                data,
                task,
                log,
                teacher,
                weights_hash(teacher),
                example,
                original,
                Reference.of(graph),
                trainer,
                Teacher(teacher, traversal.taps),
                model=self._student(teacher, device),
                budget=cfg.pruning.policy(original, teacher, timing, runtime),
                guard=self._guard(task),
                baseline_metrics=trainer.evaluate(teacher),
                cost_functions=self.cost_functions,
                table=timing[0] if timing else None,
                runtime=runtime,
            )
            log.info = RunInfo(
                self.run_dir, task.name, str(device), MappingProxyType(cfg.to_dict()),
                MappingProxyType(dict(state.baseline_metrics)), original.macs, original.params,
            )  # fmt: skip
            if last is None:
                log.notify("run_started")
            else:
                self._restore(state, last)
            if not data.has_train:
                log.record({"event": "note", "message": "no training data: channels are ranked by weight norm"})
            return state
        except BaseException:
            log.close()
            raise

    def _timing(
        self, plugins: Manager, teacher: nn.Module, graph: ChannelGraph, device: torch.device, runtime: Runtime
    ) -> tuple[LatencyTable, torch.Tensor] | None:
        """Where the run times its layers: the teacher's latency table in the run's runtime,
        measured or cached, and the batch of one it was calibrated with."""
        p = self.config.pruning
        if not p.needs_table():
            return None
        shown = (lambda calls: bar(list(calls), "latency table")) if self.progress else None
        retrace = functools.partial(self._trace_with, plugins, example=graph.example)
        return p.timing(teacher, graph, retrace, runtime, device, shown)

    def _guard(self, task: Any) -> Guard:
        p = self.config.pruning
        return Guard(task.best_metric, p.max_drop, p.class_floor, getattr(task, "class_metric", None))

    def _example(self, data: TrainingData) -> torch.Tensor:
        return example_input(self.config, self.objects, data)

    def _baseline(self, plugins: Manager, trainer: Trainer, device: torch.device, resume: bool) -> nn.Module:
        """The unpruned teacher: the saved baseline, the given checkpoint, or trained now."""
        cfg = self.config
        model, path = self.objects.model_builder(cfg, plugins)(), self.run_dir / BASELINE
        if resume and path.is_file():
            run_dir.verify(self.run_dir, path)
            load_into(model, load_weights(path), str(path))
        elif resume and run_dir.recorded(self.run_dir, BASELINE):
            raise CheckpointError(
                f"{str(path)!r} is missing, though this run wrote it; restore it to resume, "
                "or start again in a new run_dir"
            )
        elif cfg.model.checkpoint:
            start_weights(model, cfg.model)  # checked, its mismatches reported, before the run began
        elif cfg.train.epochs:
            trainer.fit(model, "train", cfg.train, cfg.train.epochs, seed=cfg.seed)
        if distributed.is_main():
            save_weights(path, model)
            run_dir.record_file(self.run_dir, path)
        distributed.barrier()
        return model.to(device).eval()

    @staticmethod
    def _student(teacher: nn.Module, device: torch.device) -> nn.Module:
        model = copy.deepcopy(teacher)
        for p in model.parameters():
            p.requires_grad_(True)
        return model.to(device)

    def _restore(self, state: RunState, last: checkpoints.Checkpoint) -> None:
        """Continue after the last complete step: its pruned model, plan and step records."""
        model = apply_plan(self.objects.model_builder(self.config, state.plugins)(), last.plan, state.plugins)
        load_into(model, last.weights, f"checkpoint step {last.step}")
        state.model, state.plan, state.start_step = model.to(state.device), last.plan, last.step + 1
        state.steps = last.steps
        if isinstance(state.budget, LatencyBudget):  # where the student stands now
            state.budget.measure(state.model)

    def _count(self, state: RunState, model: nn.Module) -> CostReport:
        return self._count_with(state.plugins, model, state.example)

    def _count_with(self, plugins: Manager, model: nn.Module, example: Any) -> CostReport:
        return count(model, example, self.cost_functions, self.config.cost.include or None, plugins=plugins)

    def _trace_with(self, plugins: Manager, model: nn.Module, example: Any) -> ChannelGraph:
        p = self.config.pruning
        return trace(model, example, p.protected, self.cost_functions, plugins=plugins, approximate=p.approximate)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self, state: RunState) -> None:
        """The steps, each retrained by prunekit's trainer or the config's ``retrain.function``."""
        retraining = retraining_for(self.config, state.trainer, state.distil_from, retrain_function(self.config))
        for step in pruning_steps(state, functools.partial(self._count, state), retraining, self.progress):
            retraining.retrain(step)

    def _finetune(self, state: RunState) -> None:
        ft = self.config.finetune
        if ft.epochs:
            seed = step_seed(self.config.seed, 10_000)
            state.trainer.fit(state.model, "finetune", ft, ft.epochs, seed, teacher=state.distil_from)

    # -- the end ---------------------------------------------------------------------------
    def _summary(self, state: RunState, final: CostReport) -> dict[str, Any]:
        teacher_after = weights_hash(state.teacher)
        if teacher_after != state.teacher_hash:
            raise RuntimeError("the teacher's weights changed during the run; this is a bug, please report it")
        kept = kept_layers(state.original, final, traversal_of(state.teacher, state.plugins).blocks)
        original = state.original
        return {
            "event": "summary",
            "macs": final.macs,
            "params": final.params,
            "original_macs": original.macs,
            "original_params": original.params,
            "macs_percent": final.percent_of(original)[0],
            "params_percent": final.percent_of(original)[1],
            "steps": len(state.steps),
            "stopped": state.stopped,
            "custom_cost": {"macs": self.cost_functions.macs.keys(), "params": self.cost_functions.params.keys()},
            "filters_removed": state.plan.removed,
            "teacher_hash_before": state.teacher_hash,
            "teacher_hash_after": teacher_after,
            "kept": [k.__dict__ for k in kept],
            "blocks": {
                "baseline": {b.name: b.macs for b in original.blocks},
                "pruned": {b.name: b.macs for b in final.blocks},
            },
        }

    def _finish(self, state: RunState) -> dict[str, Any]:
        summary = self._summary(state, self._count(state, state.model))
        summary["baseline_metrics"] = state.baseline_metrics
        summary["metrics"] = state.trainer.evaluate(state.model)
        summary["task"] = state.task.name
        if distributed.is_main():
            summary["speed"] = self._speed(state)
            summary["warnings"] = slower(summary["speed"])
            for warning in summary["warnings"]:
                state.log.record({"event": "warning", "message": warning})
            summary["class_names"] = list(state.data.class_names)
            summary["input_size"] = list(state.example.shape)
            export(self.run_dir / EXPORT, self.config, state.model, state.plan, self.objects.model)
            atomic_write_json(self.run_dir / SUMMARY, summary)
            write_report(self.run_dir, plugins=state.plugins)
        state.log.record({k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
        state.log.notify("run_finished", summary=MappingProxyType(summary))
        distributed.barrier()
        return summary

    def _speed(self, state: RunState) -> list[dict[str, Any]]:
        """The pruned model's speed-up over the baseline, measured in the run's runtime (batch 1
        and a training batch) and in the others the config compares (batch 1)."""
        p = self.config.pruning
        others = compared(p.compare_runtimes, state.plugins, state.runtime)
        return measure_speed(
            state.teacher, state.model, state.example, state.data.batch_size, state.runtime, others, p.latency_repeats
        )
