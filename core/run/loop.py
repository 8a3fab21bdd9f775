"""The pruning loop every door of a run shares: select → cut → (your or prunekit's) retraining →
guard → checkpoint, one step at a time, until the budget policy says done.

:func:`pruning_steps` is a generator: it yields a :class:`~prunekit.run.pruned_step.PrunedStep`
after each cut and, when the caller comes back, validates the model (or takes the metric the
caller reported), rolls a step that broke the guard back to the model before it and tries again
with half the step, or records, checkpoints and logs the step.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from .. import distributed
from ..cost.counting import CostReport
from ..errors import CheckpointError
from ..pruning.selection import Limits, Selection
from ..pruning.step import Proposal, PruningStep
from ..training.seeds import step_seed
from .budget import alignment
from .pruned_step import PrunedStep
from .state import RunState, Step
from .storage import checkpoints
from .storage.weights import weights_hash

Count = Callable[[nn.Module], CostReport]


def pruning_step(state: RunState, step: int, progress: bool) -> PruningStep:
    """The config's step on the run's student: its criteria, limits, protected layers, cost
    functions, calibration batches (seeded by the step) and budget policy."""
    cfg, p = state.config, state.config.pruning
    data = state.data
    batches = data.calibration_batches(p.calibration_batches, step_seed(cfg.seed, step)) if data.has_train else None
    return PruningStep(
        state.model,
        state.example,
        state.budget,
        criteria=p.criterion if batches is not None else None,
        activations_at=p.activations_at,
        limits=Limits(p.layer_limit_percent, p.block_limit_percent, p.min_channels, p.round_to),
        protected=p.protected,
        approximate=p.approximate,
        overrides=state.pricing,
        include=cfg.cost.include or None,
        batches=batches,
        loss=calibration_loss(state),
        device=state.device,
        plugins=state.plugins,
        reference=state.reference,
        table=state.table,
        align=alignment(p, state.runtime, state.device),
        progress=progress,
    )


def calibration_loss(state: RunState) -> Callable[..., Any]:
    """What gradient criteria differentiate: the task's calibration loss, where it names one and
    the config does not ask for the training loss."""
    by_task = getattr(state.task, "calibration_loss", None)
    if state.config.pruning.calibration_loss == "task" and by_task is not None:
        return by_task
    return state.trainer.objective.task_loss


def pruning_steps(state: RunState, count: Count, progress: bool, distil: bool) -> Iterator[PrunedStep]:
    """Steps until the budget is met, nothing more can be removed, or ``retries`` steps in a row
    broke the guard. ``distil``: set the distillation losses up for the caller's training."""
    p = state.config.pruning
    current, step, failures = count(state.model), state.start_step, 0
    while step <= p.max_steps and not state.budget.done(current):
        began = time.perf_counter()
        good, budget_before = copy.deepcopy(state.model), copy.copy(state.budget)
        pruning = pruning_step(state, step, progress)
        proposal = pruning.propose()
        if not proposal.removal:
            state.log.record({"event": "stop", "step": step, "message": stop_message(proposal.selection)})
            return
        cut = pruning.cut(proposal)
        state.model.to(state.device)
        after = count(state.model)
        pruned = PrunedStep(
            step, state.model, state.teacher, proposal, after, state.budget.done(after), _epochs(state), state.device
        )
        yield from _handed_over(state, pruned, distil)
        metrics = _metrics(state, pruned)
        broken = state.guard.broken(state.baseline_metrics, metrics)
        if broken is not None:
            failures += 1
            state.model, state.budget = good, budget_before
            state.budget.halve_step()
            if not _rolled_back(state, step, broken, proposal, failures):
                return
            continue
        failures = 0
        state.plan = state.plan.then(cut)
        _record(
            state,
            Step(
                step,
                after.macs,
                after.params,
                *after.percent_of(state.original),
                proposal.selection.filters,
                len(proposal.selection.at_limit),
                time.perf_counter() - began,
                metrics,
                cut.deviation,
                **state.budget.record(),
                predicted_macs=proposal.selection.macs,
                predicted_params=proposal.selection.params,
            ),
        )
        current, step = after, step + 1


def _epochs(state: RunState) -> int:
    retrain = state.config.retrain
    return 0 if retrain == "none" else retrain.epochs_per_step


def _handed_over(state: RunState, pruned: PrunedStep, distil: bool) -> Iterator[PrunedStep]:
    """Yield the step to the caller, with the distillation losses set up for its training."""
    if distil:
        seed = step_seed(state.config.seed, pruned.step)
        pruned.train = state.data.epochs(seed) if state.data.has_train else None
        pruned.distiller = state.trainer.distiller(pruned.model, state.distil_from, seed)
    try:
        yield pruned
    finally:
        if pruned.distiller is not None:
            pruned.distiller.remove()


def _metrics(state: RunState, pruned: PrunedStep) -> dict[str, float]:
    """What the caller reported (its bare number as the task's metric), else validation's."""
    if pruned.metrics is None:
        return state.trainer.evaluate(state.model)
    reported = dict(pruned.metrics)
    if "metric" in reported:
        reported[state.task.best_metric] = reported.pop("metric")
    return reported


def _rolled_back(state: RunState, step: int, reason: str, proposal: Proposal, failures: int) -> bool:
    """Log the rollback; ``False`` when the retries are used up (the run stops there)."""
    wanted = ", ".join(f"{layer} ({n} of {of})" for layer, (n, of) in sorted(proposal.layers().items()))
    retries = state.config.pruning.retries
    state.log.record(
        {
            "event": "rollback",
            "step": step,
            "reason": reason,
            "layers": wanted,
            "failures": failures,
            "retries": retries,
        }
    )
    if failures <= retries:
        return True
    state.log.record(
        {
            "event": "stop",
            "step": step,
            "message": f"step {step} broke the guard {failures} times in a row ({reason}); it wanted to cut "
            f"{wanted}. Keeping the last good model",
        }
    )
    return False


def _record(state: RunState, record: Step) -> None:
    """Check, keep, checkpoint and log a step that holds."""
    record.check_prediction()
    state.steps.append(record)
    _check_ranks_agree(state, record)
    if distributed.is_main():
        checkpoints.save(state.run_dir, record.step, state.model, state.plan, state.steps)
    state.log.record(record.record())
    state.log.notify("step_done", run=state, record=record.record())
    distributed.barrier()


def _check_ranks_agree(state: RunState, record: Step) -> None:
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


def stop_message(selection: Selection) -> str:
    limited = f" ({len(selection.at_limit)} layers or blocks at their limit)" if selection.at_limit else ""
    return (
        "nothing more can be removed: every remaining channel is protected, needed by the minimum "
        f"channel count, or in a layer or block at its limit{limited}; keeping the result so far"
    )


def retrain_with(fn: Callable[[PrunedStep], Any], pruned: PrunedStep) -> None:
    """A config's ``retrain.function``: called with the step; what it returns is the step's metric."""
    result = fn(pruned)
    if result is not None and pruned.metrics is None:
        pruned.report(result)
