"""A run's pruning: the session's cuts, each retrained (by prunekit's trainer, your function or
your own loop), judged by the guard, then recorded, checkpointed and logged — or rolled back.

:func:`pruning_steps` is a generator: it yields a :class:`~prunekit.run.pruned_step.PrunedStep`
after each cut of the :class:`~prunekit.pruning.session.PruningSession` and, when the caller comes
back, validates the model (or takes the metric the caller reported) and either keeps the step or
rolls it back, and the session tries again with half the step.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator

from torch import nn

from .. import distributed
from ..cost.counting import CostReport
from ..errors import CheckpointError, ConfigError
from ..pruning.session import Cut, PruningSession, StepFactory, step_factory
from ..run_records import StepRecord
from .pruned_step import PrunedStep
from .retraining import Retraining
from .state import RunState
from .storage import checkpoints
from .storage.weights import weights_hash

Count = Callable[[nn.Module], CostReport]


def steps_of(state: RunState, retraining: Retraining, progress: bool) -> StepFactory:
    """The config's steps on the run's student: its settings, the retraining's calibration batches
    and loss, cost functions and latency table."""
    cfg, p = state.config, state.config.pruning
    return step_factory(
        p,
        state.example,
        batches=retraining.calibration_batches,
        loss=retraining.loss,
        device=state.device,
        plugins=state.plugins,
        align=p.alignment(state.runtime, state.device),
        cost_functions=state.cost_functions,
        include=cfg.cost.include or None,
        reference=state.reference,
        table=state.table,
        progress=progress,
    )


def pruning_steps(state: RunState, count: Count, retraining: Retraining, progress: bool) -> Iterator[PrunedStep]:
    """Steps until the budget is met, nothing more can be removed, or ``retries`` steps in a row
    broke the guard; each yielded while ``retraining`` has it set up for training, then judged."""
    p = state.config.pruning
    session = PruningSession(
        state.model, state.budget, steps_of(state, retraining, progress), count, max_steps=p.max_steps,
        retries=p.retries,
        device=state.device, start=state.start_step, plan=state.plan,
    )  # fmt: skip
    try:
        for cut in session:
            state.model, state.budget = cut.model, session.budget
            pruned = PrunedStep(
                cut.step, cut.model, state.teacher, cut.proposal, cut.cost, cut.last, _epochs(state), state.device
            )
            with retraining.training(pruned):
                yield pruned
            pruned.check_structure(cut.model)
            metrics = _metrics(state, pruned, retraining)
            broken = state.guard.broken(state.baseline_metrics, metrics)
            if broken is not None:
                _rolled_back(state, cut, broken, session.failures + 1)
                cut.roll_back(broken)
                continue
            state.plan = session.plan.then(cut.plan)
            _record(state, cut, metrics)
    finally:
        state.model, state.budget, state.plan = session.model, session.budget, session.plan
    state.stopped = session.stopped
    if session.stopped:
        state.log.record({"event": "stop", "step": session.step, "message": session.stopped})


def _epochs(state: RunState) -> int:
    retrain = state.config.retrain
    return 0 if retrain == "none" else retrain.epochs_per_step


def _metrics(state: RunState, pruned: PrunedStep, retraining: Retraining) -> dict[str, float]:
    """What the step's trainer reported (a bare number as the task's metric), else validation's;
    per-class metrics from validation where the guard's ``class_floor`` needs them and the report
    gave none."""
    if pruned.metrics is None:
        return retraining.evaluate(pruned.model)
    task, reported = state.task, dict(pruned.metrics)
    if "metric" in reported:
        reported[task.best_metric] = reported.pop("metric")
    if task.best_metric not in reported and task.best_metric in state.baseline_metrics:
        raise ConfigError(
            f"step {pruned.step} reported {', '.join(sorted(reported)) or 'nothing'}, but not {task.best_metric!r}, "
            f"the metric of task {task.name!r} the guard compares: report it (step.report({task.best_metric}=…) or "
            "a bare number), or report nothing and let prunekit validate"
        )
    prefix = state.guard.class_prefix
    if state.guard.class_floor is not None and prefix and not any(k.startswith(prefix) for k in reported):
        per_class = {k: v for k, v in retraining.evaluate(pruned.model).items() if k.startswith(prefix)}
        if not per_class and pruned.step == state.start_step:
            why = f"the steps report no per-class metrics ({prefix}0, …) and there is no validation data to measure"
            state.log.record({"event": "note", "message": f"class_floor is not applied: {why}"})
        reported = {**per_class, **reported}
    return reported


def _rolled_back(state: RunState, cut: Cut, reason: str, failures: int) -> None:
    wanted = ", ".join(f"{layer} ({n} of {of})" for layer, (n, of) in sorted(cut.proposal.layers().items()))
    state.log.record(
        {
            "event": "rollback",
            "step": cut.step,
            "reason": reason,
            "layers": wanted,
            "failures": failures,
            "retries": state.config.pruning.retries,
        }
    )


def _record(state: RunState, cut: Cut, metrics: dict[str, float]) -> None:
    """Check, keep, checkpoint and log a step that holds."""
    after, selection = cut.cost, cut.proposal.selection
    record = StepRecord(
        cut.step,
        after.macs,
        after.params,
        *after.percent_of(state.original),
        selection.filters,
        len(selection.at_limit),
        time.perf_counter() - cut.began,
        {**metrics, **_ranks_agree(state, cut.step)},
        cut.plan.deviation,
        **state.budget.record(),
        predicted_macs=selection.macs,
        predicted_params=selection.params,
    )
    state.steps.append(record)
    if distributed.is_main():
        checkpoints.save(state.run_dir, record.step, state.model, state.plan, state.steps)
    state.log.record(record.record())
    state.log.notify("step_done", record=record)
    distributed.barrier()


def _ranks_agree(state: RunState, step: int) -> dict[str, float]:
    """Every process must hold the same plan and weights after a step; stop if not (under torchrun
    the step's metrics say so: ``ranks_identical``)."""
    if not distributed.active():
        return {}
    digest = hashlib.sha256((state.plan.to_json() + weights_hash(state.model)).encode()).hexdigest()
    digests = distributed.gather(digest)
    if len(set(digests)) != 1:
        raise CheckpointError(
            f"step {step}: the processes disagree on the pruned model "
            f"({len(set(digests))} different states); the last checkpoint is kept"
        )
    return {"ranks_identical": 1.0}
