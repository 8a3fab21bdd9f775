"""The one-call door: a model and an example input in, a pruned copy, its plan and a before/after
cost table out — no training, no run directory."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cost.counting import CostReport, count
from ..cost.formatting import human, render_table
from ..cost.latency import Speedup
from ..cost.runtimes import runtime_named
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.overrides import Overrides, Pricing
from ..records import as_batch
from ..seam import Factories, Runtime, resolve
from .budget import ResourceBudget
from .latency_budget import LatencyBudget
from .plan import Plan
from .ranking import CriterionConfig
from .selection import Limits, Reference
from .step import PruningStep

#: the most steps one call takes toward a target speed-up
MAX_LATENCY_STEPS = 20


@dataclass
class Pruned:
    """What :func:`prune_to` returns: the pruned copy, the plan that rebuilds it from the original
    architecture, the cost before and after, and notes on how it was chosen. Printed, a table."""

    model: nn.Module
    plan: Plan
    before: CostReport
    after: CostReport
    steps: int
    speedup: Speedup | None = None
    notes: list[str] = field(default_factory=list)
    runtime: str = "eager"  # where ``speedup`` was measured

    def table(self) -> str:
        macs, params = self.after.percent_of(self.before)
        rows = [
            ["MACs", human(self.before.macs), human(self.after.macs), f"{macs:.1f} % kept"],
            ["params", human(self.before.params), human(self.after.params), f"{params:.1f} % kept"],
        ]
        if self.speedup is not None:
            rows.append(["speed-up", "1.00×", str(self.speedup), f"measured in {self.runtime}, batch 1"])
        text = render_table(["", "before", "after", ""], rows, right=(1, 2))
        return "\n".join([text, *self.notes])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<Pruned: {self.after.percent_of(self.before)[0]:.1f} % of the MACs in {self.steps} step(s)>"


def _check_numbers(required: dict[str, Any], optional: dict[str, Any]) -> None:
    """The numeric arguments of :func:`prune_to` are numbers (ranges are the budget's to judge)."""
    for name, value in {**required, **{k: v for k, v in optional.items() if v is not None}}.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"prune_to: {name} must be a number, not {type(value).__name__}")


def prune_to(
    model: nn.Module,
    example_input: Any,
    percent: float = 50.0,
    *,
    resource: str = "macs",
    target_speedup: float | None = None,
    runtime: str | Runtime = "eager",
    align: int | str | None = "auto",
    data: Iterable[Any] | None = None,
    loss: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor] | None = None,
    criteria: CriterionConfig | Mapping[str, float] | None = None,
    steps: int = 1,
    limits: Limits | None = None,
    protected: Iterable[str] = (),
    approximate: Iterable[str] = (),
    overrides: Overrides | None = None,
    param_overrides: Overrides | None = None,
    include: str | Iterable[str] | None = None,
    plugins: Factories | None = None,
    progress: bool = False,
    clock: Callable[[list[nn.Module], torch.Tensor, int], list[list[float]]] | None = None,
) -> Pruned:
    """A copy of ``model`` with ``percent`` of its ``resource`` (``macs`` or ``params``, in your
    units where ``overrides`` price layers) removed in ``steps`` equal steps — or, with
    ``target_speedup``, pruned until the lower end of the speed-up measured over the original in
    ``runtime`` (``eager``, ``compile``, ``onnxruntime`` or a plugin's) reaches it.

    Without ``data`` the channels are ranked by weight norm, which needs none; with ``data`` (an
    iterable of batches: ``(image, target)`` tuples or dicts) by the default criteria, calibrated
    on it, with ``loss(logits, batch)`` (default: cross-entropy against ``batch["target"]``) for
    their gradients. ``limits`` default to 75 % of a layer's and a block's parameters; ``align``
    keeps channel counts at the multiple ``runtime`` runs fast on the device (``"auto"``), at an
    int's, or anywhere (``None``). ``clock`` measures the speed-up (seconds of each model in each
    round; :func:`prunekit.cost.measure_rounds` in ``runtime`` by default, a model of the device
    in a test).
    """
    _check_numbers({"percent": percent, "steps": steps}, {"target_speedup": target_speedup})
    plugins = resolve(plugins)
    pruned = copy.deepcopy(model)
    pricing = Pricing.of(overrides, param_overrides)
    before = count(pruned, example_input, pricing, include, plugins=plugins)
    batches = [as_batch(b) for b in data] if data is not None else None
    device = next((p.device for p in pruned.parameters()), torch.device("cpu"))
    deployed = runtime_named(runtime, plugins, device)
    graph = trace(pruned, example_input, protected, pricing, plugins=plugins, approximate=approximate)
    target = target_speedup or (1.0 / (1.0 - percent / 100.0) if resource == "latency" else None)
    budget = (
        ResourceBudget(before, resource, percent, ("percent", percent / max(1, steps)))
        if target is None
        else _latency_budget(model, graph, before, target, device, (protected, pricing, plugins), deployed, clock)
    )
    if align == "auto":
        align = deployed.alignment(device)
    plan, taken, reference = Plan(), 0, Reference.of(graph)
    notes = [] if batches is not None else ["no data given: channels ranked by weight norm, which needs none"]
    now = before
    while not budget.done(now) and taken < (MAX_LATENCY_STEPS if isinstance(budget, LatencyBudget) else steps):
        step = PruningStep(
            pruned,
            example_input,
            budget,
            criteria=criteria,
            limits=limits or Limits(75.0, 75.0),
            protected=protected,
            approximate=approximate,
            overrides=pricing,
            include=include,
            batches=batches,
            loss=loss or _cross_entropy,
            device=device,
            plugins=plugins,
            reference=reference,
            align=align,
            progress=progress,
        )
        proposal = step.propose()
        if not proposal.removal:
            notes.append("stopped early: every remaining channel is protected or in a layer or block at its limit")
            break
        plan, taken = plan.then(step.cut(proposal)), taken + 1
        now = count(pruned, example_input, pricing, include, plugins=plugins)
    speedup = budget.speedup() if isinstance(budget, LatencyBudget) else None
    return Pruned(pruned.eval(), plan, before, now, taken, speedup, notes, deployed.name)


def _latency_budget(
    model: nn.Module,
    graph: ChannelGraph,
    before: CostReport,
    target: float,
    device: torch.device,
    tracing: tuple[Iterable[str], Pricing, Factories],
    runtime: Runtime,
    clock: Callable[[list[nn.Module], torch.Tensor, int], list[list[float]]] | None,
) -> LatencyBudget:
    """The original's latency table in ``runtime``, and a budget that steps toward ``target`` as
    far as the table predicts, measured before each cut (the floor corrected while it falls short)."""
    teacher = copy.deepcopy(model).eval()
    protected, pricing, plugins = tracing
    retrace = functools.partial(
        trace, example_input=graph.example, protected=protected, overrides=pricing, plugins=plugins
    )
    table, example = LatencyBudget.measure_table(teacher, graph, retrace, device, runtime=runtime)
    return LatencyBudget(
        before, table, teacher, example, target, "latency", ("percent", 100.0), clock=clock, runtime=runtime
    )


def _cross_entropy(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    return F.cross_entropy(logits, batch["target"].long())
