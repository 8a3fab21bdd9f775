"""The iterative pruning loop: calibrate → score → select → cut → retrain → evaluate → checkpoint.

``Pruner.from_config(cfg).run()`` is the whole job: baseline (loaded or trained), the loop until
the budget is met, a final fine-tune, the export and a summary. Every step is checkpointed
atomically; ``run(resume=True)`` continues from the last complete step and, because all
randomness of a step is derived from ``(seed, step)``, ends where an uninterrupted run ends.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..cost.cost_model import CostModel
from ..cost.counting import CostReport, count
from ..cost.latency import measure
from ..errors import CheckpointError
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.overrides import Overrides
from ..graph.traversal import traversal_of
from ..plugin_manager import Manager
from ..pruning.calibration import calibrate, needs
from ..pruning.plan import apply_plan
from ..pruning.scoring import group_scores
from ..pruning.selection import Limits, Reference, Selection, per_cost, select
from ..pruning.surgery import remove
from ..training import distributed
from ..training.data import TrainingData
from ..training.distiller import Teacher
from ..training.seeds import seed_everything, step_seed
from ..training.trainer import Trainer
from . import budget, checkpoints, latency_budget, run_dir
from .atomic_files import atomic_write_json
from .components import Objects, build_criteria, build_loggers, check, example_input
from .config import Config
from .config import load as load_config
from .export import export
from .latency_budget import LatencyBudget
from .report import kept_channels, write_report
from .run_log import Console, RunLog
from .state import Result, RunState, Step
from .weights import load_into, load_weights, save_weights, weights_hash


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
        self.objects = Objects(model, train, val, loss, example_input, overrides, param_overrides)
        self.run_dir = Path(self.config.run_dir)
        self.pricing = self.objects.pricing(self.config)

    @classmethod
    def from_config(cls, source: str | Path | dict | Config, progress: bool = True) -> Pruner:
        return cls(source if isinstance(source, Config) else load_config(source), progress)

    # -- the whole job ---------------------------------------------------------------------
    def run(self, resume: bool = False) -> Result:
        """Baseline → pruning loop → fine-tune → export → summary."""
        state = self.prepare(resume)
        try:
            self._loop(state)
            self._finetune(state)
            summary = self._finish(state)
        finally:
            state.log.close()
        return Result(state.model, state.plan, state.steps, summary, state)

    def prune(self, resume: bool = False) -> Result:
        """Only the pruning loop (with its retraining), for ``prunekit prune``."""
        state = self.prepare(resume)
        try:
            self._loop(state)
        finally:
            state.log.close()
        return Result(
            state.model, state.plan, state.steps, self._summary(state, self._count(state, state.model)), state
        )

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self, resume: bool = False) -> RunState:
        """Join the process group, build the run's objects, and load or train the baseline."""
        cfg = self.config
        plugins = self.plugins or cfg.manager()
        distributed.init()
        device = distributed.device_for(distributed.resolve_device(cfg.device))
        seed_everything(cfg.seed)
        trainer = check(cfg, plugins, device, self.progress, self.objects, self.pricing)  # all exists: only now write
        data, task = trainer.data, trainer.task
        run_dir.claim(self.run_dir, cfg, resume, self.objects.fingerprint())
        console = Console(task.best_metric, task.best_label) if self.progress else None
        log = RunLog(self.run_dir, plugins, build_loggers(cfg, self.run_dir, plugins), console)
        trainer.on_epoch = log.epoch
        try:
            teacher = self._baseline(plugins, trainer, device, resume)
            example = self._example(data)
            original = self._count_with(plugins, teacher, example)
            graph = self._trace_with(plugins, teacher, example)
            traversal = traversal_of(teacher, plugins, example)
            for p in teacher.parameters():
                p.requires_grad_(False)
            last = checkpoints.load_last(self.run_dir) if resume else None
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
                latency=self._latency_budget(plugins, teacher, graph, device),
            )
            if last is None:
                log.notify("run_started", run=state)
            else:
                self._restore(state, last)
            return state
        except BaseException:
            log.close()
            raise

    def _latency_budget(
        self, plugins: Manager, teacher: nn.Module, graph: ChannelGraph, device: torch.device
    ) -> LatencyBudget | None:
        """With a latency budget, ranking or target speed-up: the teacher's latency table, measured or cached."""
        p = self.config.pruning
        if not budget.measures(p) and p.criterion.per_cost != "latency":
            return None
        bar = (lambda calls: tqdm(list(calls), desc="latency table", leave=False)) if self.progress else None
        retrace = functools.partial(self._trace_with, plugins, example=graph.example)
        return latency_budget.prepare(p, teacher, graph, retrace, device, bar)

    def _example(self, data: TrainingData) -> torch.Tensor:
        return example_input(self.config, self.objects, data)

    def _baseline(self, plugins: Manager, trainer: Trainer, device: torch.device, resume: bool) -> nn.Module:
        """The unpruned teacher: the saved baseline, the given checkpoint, or trained now."""
        cfg = self.config
        model, path = self.objects.model_builder(cfg, plugins)(), self.run_dir / "baseline.safetensors"
        if resume and path.is_file():
            run_dir.verify(self.run_dir, path)
            load_into(model, load_weights(path), str(path))
        elif cfg.model.checkpoint:
            load_into(model, load_weights(Path(cfg.model.checkpoint)), f"model.checkpoint {cfg.model.checkpoint!r}")
        elif cfg.train.epochs:
            trainer.fit(model, "train", cfg.train, cfg.train.epochs, seed=cfg.seed)
        if distributed.is_main():
            save_weights(path, model)
            run_dir.record(self.run_dir, path)
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

    def _count(self, state: RunState, model: nn.Module) -> CostReport:
        return self._count_with(state.plugins, model, state.example)

    def _count_with(self, plugins: Manager, model: nn.Module, example: Any) -> CostReport:
        return count(model, example, self.pricing, self.config.cost.include or None, plugins=plugins)

    def _trace(self, state: RunState, model: nn.Module) -> ChannelGraph:
        return self._trace_with(state.plugins, model, state.example)

    def _trace_with(self, plugins: Manager, model: nn.Module, example: Any) -> ChannelGraph:
        p = self.config.pruning
        return trace(model, example, p.protected, self.pricing, plugins=plugins, approximate=p.approximate)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self, state: RunState) -> None:
        cfg = self.config.pruning
        current = self._count(state, state.model)
        step = state.start_step
        if state.latency is not None and state.steps:  # resumed: where the student stands now
            state.measured = state.latency.measured(state.teacher, state.model)
        while step <= cfg.max_steps and not budget.done(cfg, state.original, current, state.speedup()):
            began = time.perf_counter()
            graph, selection = self._select(state, step)
            if not selection.removal:
                state.log.record({"event": "stop", "step": step, "message": _stop_message(selection)})
                break
            cut = remove(state.model, graph, selection.removal)
            state.plan = state.plan.then(cut)
            state.model.to(state.device)
            current = self._count(state, state.model)
            if state.latency is not None:
                state.predicted = state.latency.table.network_seconds(selection.seconds)
                state.measured = state.latency.measured(state.teacher, state.model)
            metrics = self._retrain_and_evaluate(state, step)
            original = state.original
            record = Step(
                step,
                current.macs,
                current.params,
                *current.percent_of(original),
                selection.filters,
                len(selection.at_limit),
                time.perf_counter() - began,
                metrics,
                cut.deviation,
                *state.latency_fields(),
                predicted_macs=selection.macs,
                predicted_params=selection.params,
            )
            record.check_prediction()
            state.steps.append(record)
            self._check_ranks_agree(state, record)
            if distributed.is_main():
                checkpoints.save(self.run_dir, step, state.model, state.plan, state.steps)
            state.log.record(record.record())
            state.log.notify("step_done", run=state, record=record.record())
            distributed.barrier()
            step += 1

    def _select(self, state: RunState, step: int) -> tuple[ChannelGraph, Selection]:
        """Trace, calibrate and score the student; rank 0 selects, every rank gets its selection."""
        p = self.config.pruning
        graph = self._trace(state, state.model)
        criteria = build_criteria(p.criterion, state.plugins)
        observers = {name: criterion for name, (criterion, _) in criteria.items()}
        if needs(observers) & {"activations", "gradients"}:
            batches = state.data.calibration_batches(p.calibration_batches, step_seed(self.config.seed, step))
            calibrate(
                state.model,
                graph,
                observers,
                batches,
                loss=state.trainer.objective.task_loss,
                device=state.device,
                progress=self.progress,
                tap=p.activations_at,
            )
            for criterion in observers.values():
                if distributed.active() and hasattr(criterion, "all_reduce"):
                    criterion.all_reduce(distributed.all_reduce_sum)
        if not distributed.is_main():  # rank 0 selects; everyone cuts the same channels
            return graph, distributed.broadcast(None)
        table = state.latency.table if state.latency else None
        cost = CostModel(graph, self.config.cost.include or None, table)
        scores = group_scores(graph, criteria, p.criterion.normalize, p.criterion.reduce)
        if p.criterion.per_cost != "none":
            scores = per_cost(scores, cost, p.criterion.per_cost, p.criterion.element_macs)
        aligned = table is not None and p.resource == "latency" and p.round_to is None  # the device's multiple
        round_to = table.align if table is not None and aligned else p.round_to
        limits = Limits(p.layer_limit_percent, p.block_limit_percent, p.min_channels, round_to, free_below=aligned)
        step_budget = budget.step_budget(p, state.original, state.latency_floor(p, cost))
        choose = functools.partial(select, graph, scores, cost, state.reference, limits)
        if state.latency is None or p.resource != "latency":
            return graph, distributed.broadcast(choose(step_budget))
        now = (state.latency.table.network_seconds(cost.seconds), state.speedup() or 1.0)
        selection = state.latency.checked(p, state.teacher, (state.model, graph), choose, step_budget, now)
        return graph, distributed.broadcast(selection)

    def _retrain_and_evaluate(self, state: RunState, step: int) -> dict[str, float]:
        """Retrain (validation after each epoch) or, one-shot, just validate."""
        retrain, metrics = self.config.retrain, {}
        if retrain != "none" and retrain.epochs_per_step:
            seed = step_seed(self.config.seed, step)
            metrics = state.trainer.fit(
                state.model, "retrain", retrain, retrain.epochs_per_step, seed, step, teacher=state.distil_from
            )
        return metrics or state.trainer.evaluate(state.model)

    def _finetune(self, state: RunState) -> None:
        ft = self.config.finetune
        if ft.epochs:
            seed = step_seed(self.config.seed, 10_000)
            state.trainer.fit(state.model, "finetune", ft, ft.epochs, seed, teacher=state.distil_from)

    def _check_ranks_agree(self, state: RunState, record: Step) -> None:
        """Every process must hold the same plan and weights after a step; stop if not."""
        if not distributed.active():
            return
        digest = hashlib.sha256((state.plan.to_json() + weights_hash(state.model)).encode()).hexdigest()
        digests = distributed.gather(digest)
        record.metrics["ranks_identical"] = float(len(set(digests)) == 1)
        if len(set(digests)) != 1:
            raise CheckpointError(
                f"step {record.step}: the processes disagree on the pruned model "
                f"({len(set(digests))} different states); the last checkpoint is kept"
            )

    # -- the end ---------------------------------------------------------------------------
    def _summary(self, state: RunState, final: CostReport) -> dict[str, Any]:
        teacher_after = weights_hash(state.teacher)
        if teacher_after != state.teacher_hash:
            raise RuntimeError("the teacher's weights changed during the run; this is a bug, please report it")
        kept = kept_channels(state.original, final, traversal_of(state.teacher, state.plugins).blocks)
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
            "custom_cost": {"macs": self.pricing.macs.keys(), "params": self.pricing.params.keys()},
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
        summary["baseline_metrics"] = state.trainer.evaluate(state.teacher)
        summary["metrics"] = state.trainer.evaluate(state.model)
        summary["task"] = state.task.name
        if distributed.is_main():
            summary["latency"] = self._latency(state)
            summary["class_names"] = list(state.data.class_names)
            summary["input_size"] = list(state.example.shape)
            export(self.run_dir / "export", self.config, state.model, state.plan, self.objects.model)
            atomic_write_json(self.run_dir / "summary.json", summary)
            write_report(self.run_dir, plugins=state.plugins)
        state.log.record({k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
        state.log.notify("run_finished", run=state, summary=summary)
        distributed.barrier()
        return summary

    def _latency(self, state: RunState) -> dict[str, float]:
        """Measured CPU or GPU seconds per forward, baseline and pruned, batch 1 and a full batch."""
        out = {}
        one = state.example[:1]
        for batch in sorted({1, state.data.batch_size}):
            x = one.expand(batch, *one.shape[1:]).contiguous().to(state.device)
            base, pruned = measure([state.teacher, state.model], x, repeats=10)
            out[f"baseline_batch{batch}"], out[f"pruned_batch{batch}"] = base, pruned
        return out


def _stop_message(selection: Selection) -> str:
    limited = f" ({len(selection.at_limit)} layers or blocks at their limit)" if selection.at_limit else ""
    return (
        "nothing more can be removed: every remaining channel is protected, needed by the minimum "
        f"channel count, or in a layer or block at its limit{limited}; keeping the result so far"
    )
