"""The pruning loop every door runs: step after step until the budget is met — propose, stop when
nothing more can be removed, cut, recount, extend the plan — with the snapshot a rollback needs.

:func:`prunekit.prune_to` runs a session to its end; a whole run and ``Pruner.steps()`` take its
cuts one by one, retrain each, and roll back the ones the guard refuses. Every step is built from
one :class:`~prunekit.pruning.settings.PruningConfig` by :func:`step_factory`, the same for every
door, so the same settings and data prune the same channels whichever door they come through.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..cost.counting import CostReport
from ..cost.latency_table import LatencyTable
from ..graph.overrides import CostFunctions
from ..seam import Factories
from .budget import ResourceBudget
from .plan import Plan
from .selection import Reference, Selection
from .settings import PruningConfig
from .step import Proposal, PruningStep, check_prediction

#: the pruning step of a session's step number, on its model, under its budget
StepFactory = Callable[[int, nn.Module, ResourceBudget], PruningStep]


def step_factory(
    settings: PruningConfig,
    example_input: Any,
    *,
    batches: Callable[[int], Iterable[dict[str, Any]] | None],
    loss: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor] | None,
    device: torch.device,
    plugins: Factories,
    align: int | None,
    cost_functions: CostFunctions | None = None,
    include: str | Iterable[str] | None = None,
    reference: Reference | None = None,
    table: LatencyTable | None = None,
    progress: bool = False,
) -> StepFactory:
    """The steps ``settings`` ask for: ranked by their criteria on the step's calibration
    ``batches`` (weight norm where there are none), under their limits, counts kept at ``align``."""

    def make(step: int, model: nn.Module, budget: ResourceBudget) -> PruningStep:
        calibration = batches(step)
        return PruningStep(
            model,
            example_input,
            budget,
            criteria=settings.criterion if calibration is not None else None,
            activations_at=settings.activations_at,
            limits=settings.limits(),
            protected=settings.protected,
            approximate=settings.approximate,
            overrides=cost_functions,
            include=include,
            batches=calibration,
            loss=loss,
            device=device,
            plugins=plugins,
            reference=reference,
            table=table,
            align=align,
            progress=progress,
        )

    return make


@dataclass
class Cut:
    """One step's cut: ``model`` (cut in place) now costs ``cost``; ``plan`` records what this step
    removed, ``proposal`` what it chose and why; ``last``: the budget is met with it. Until the
    session goes on, :meth:`roll_back` undoes it."""

    step: int
    model: nn.Module
    proposal: Proposal
    plan: Plan
    cost: CostReport
    last: bool
    began: float = field(default_factory=time.perf_counter)  # when the step began, for its duration
    rolled_back: str | None = field(default=None, init=False)

    def roll_back(self, reason: str) -> None:
        """Undo this cut (the model before it comes back, and the next try takes half the step)."""
        self.rolled_back = reason


class PruningSession:
    """``model`` pruned in place, step after step, until ``budget`` is met, ``max_steps`` steps are
    taken, or nothing more can be removed. Iterating yields each :class:`Cut`; a cut rolled back
    restores the model and budget from before it and halves the step, at most ``retries`` times in
    a row (``None``: cuts cannot be rolled back, and no snapshot is taken). ``count`` recounts
    the model after a cut; a resumed session starts at ``start`` with the ``plan`` so far.
    ``stopped`` says why it ended before the budget was met, if it did."""

    def __init__(
        self,
        model: nn.Module,
        budget: ResourceBudget,
        make_step: StepFactory,
        count: Callable[[nn.Module], CostReport],
        *,
        max_steps: int = 100,
        retries: int | None = None,
        device: torch.device | None = None,
        start: int = 1,
        plan: Plan | None = None,
    ) -> None:
        self.model, self.budget, self.make_step, self.count = model, budget, make_step, count
        self.max_steps, self.retries, self.device = max_steps, retries, device
        self.step, self.plan = start, plan or Plan()
        self.cost = count(model)
        self.failures = 0
        self.stopped: str | None = None

    def done(self) -> bool:
        return self.step > self.max_steps or self.budget.done(self.cost)

    def __iter__(self) -> Iterator[Cut]:
        while not self.done():
            began = time.perf_counter()
            before = (copy.deepcopy(self.model), copy.copy(self.budget)) if self.retries is not None else None
            pruning = self.make_step(self.step, self.model, self.budget)
            proposal = pruning.propose()
            if not proposal.removal:
                self.stopped = stop_message(proposal.selection)
                return
            plan = pruning.cut(proposal, check=False)
            if self.device is not None:
                self.model.to(self.device)
            cost = self.count(self.model)
            check_prediction(proposal.selection, cost)
            cut = Cut(self.step, self.model, proposal, plan, cost, self.budget.done(cost), began)
            yield cut
            if cut.rolled_back is None:
                self.plan, self.cost, self.step, self.failures = self.plan.then(plan), cost, self.step + 1, 0
            elif not self._restore(before, cut):
                return

    def run(self) -> PruningSession:
        """Every step to the end (nothing rolled back)."""
        for _ in self:
            pass
        return self

    def _restore(self, before: tuple[nn.Module, ResourceBudget] | None, cut: Cut) -> bool:
        """The model and budget from before ``cut``, the step halved; False once the retries are used up."""
        if before is None:
            raise RuntimeError("this session takes no snapshots (retries=None): its cuts cannot be rolled back")
        self.model, self.budget = before
        self.budget.halve_step()
        self.failures += 1
        if self.failures > (self.retries or 0):
            wanted = ", ".join(f"{layer} ({n} of {of})" for layer, (n, of) in sorted(cut.proposal.layers().items()))
            self.stopped = (
                f"step {cut.step} broke the guard {self.failures} times in a row ({cut.rolled_back}); it wanted to "
                f"cut {wanted}. Keeping the last good model"
            )
            return False
        return True


def stop_message(selection: Selection) -> str:
    """Why a step found nothing to remove."""
    limited = f" ({len(selection.at_limit)} layers or blocks at their limit)" if selection.at_limit else ""
    return (
        "nothing more can be removed: every remaining channel is protected, needed by the minimum "
        f"channel count, or in a layer or block at its limit{limited}; keeping the result so far"
    )
