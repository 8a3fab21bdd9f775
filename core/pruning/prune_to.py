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
from ..cost.latency_table import LatencyTable
from ..cost.runtimes import runtime_named
from ..errors import ConfigError
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.overrides import CostFunctions, Overrides
from ..records import as_batch
from ..schema import build, to_dict
from ..seam import Factories, Runtime, resolve
from .latency_budget import LatencyBudget
from .plan import Plan
from .ranking import CriterionConfig, default_mix
from .selection import Limits, Reference
from .session import PruningSession, step_factory
from .settings import PruningConfig, beneath
from .step import names

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


def _check_arguments(percent: Any, steps: Any, target_speedup: Any, limits: Any) -> None:
    """The arguments of :func:`prune_to` that its settings cannot judge (ranges are the schema's)."""
    for name, value in {"percent": percent, "target_speedup": target_speedup}.items():
        if (value is not None or name == "percent") and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ConfigError(f"prune_to: {name} must be a number, not {type(value).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"prune_to: steps must be a whole number >= 1, not {steps!r}")
    if limits is not None and not isinstance(limits, Limits):
        raise ConfigError(f"prune_to: limits must be a prunekit.Limits, not {type(limits).__name__}")


def _batches(data: Iterable[Any] | None) -> list[dict[str, Any]] | None:
    """``data`` as batches, checked to hold one at least (a ranking calibrated on nothing is none)."""
    if data is None:
        return None
    batches = [as_batch(b) for b in data]
    if not batches:
        raise ConfigError("prune_to: data holds no batch; give one batch at least, or none to rank by weight norm")
    return batches


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

    The arguments are the settings of a run's ``pruning`` section (:func:`settings`), with the
    same defaults: the same settings and data prune the same channels here as in a run.
    Without ``data`` the channels are ranked by weight norm, which needs none; with ``data`` (an
    iterable of batches: ``(image, target)`` tuples or dicts) by the default criteria, calibrated
    on it, with ``loss(logits, batch)`` (default: cross-entropy against ``batch["target"]``) for
    their gradients. ``limits`` default to 75 % of a layer's and a block's parameters; ``align``
    keeps channel counts at the multiple ``runtime`` runs fast on the device (``"auto"``), at an
    int's, or anywhere (``None``). ``clock`` measures the speed-up (seconds of each model in each
    round; :func:`prunekit.cost.measure_rounds` in ``runtime`` by default, a model of the device
    in a test).
    """
    _check_arguments(percent, steps, target_speedup, limits)
    plugins = resolve(plugins)
    config = settings(
        plugins, percent, resource, target_speedup, align, criteria, steps, limits, protected, approximate
    )
    pruned = copy.deepcopy(model)
    costs = CostFunctions.of(overrides, param_overrides)
    recount = functools.partial(count, example_input=example_input, overrides=costs, include=include, plugins=plugins)
    before = recount(pruned)
    batches = _batches(data)
    device = next((p.device for p in pruned.parameters()), torch.device("cpu"))
    deployed = runtime_named(runtime, plugins, device)
    graph = trace(pruned, example_input, config.protected, costs, plugins=plugins, approximate=config.approximate)
    teacher, timing = (
        _timing(model, graph, config, device, (costs, plugins), deployed) if config.measures() else (model, None)
    )
    budget = config.policy(before, teacher, timing, deployed, clock)
    make_step = step_factory(
        config, example_input, batches=lambda step: batches, loss=loss or _cross_entropy, device=device,
        plugins=plugins, align=config.alignment(deployed, device), cost_functions=costs, include=include,
        reference=Reference.of(graph), progress=progress,
    )  # fmt: skip
    session = PruningSession(pruned, budget, make_step, recount, max_steps=config.max_steps).run()
    notes = [] if batches is not None else ["no data given: channels ranked by weight norm, which needs none"]
    if session.stopped:
        notes.append("stopped early: every remaining channel is protected or in a layer or block at its limit")
    speedup = budget.speedup() if isinstance(budget, LatencyBudget) else None
    return Pruned(pruned.eval(), session.plan, before, session.cost, session.step - 1, speedup, notes, deployed.name)


def settings(
    plugins: Factories,
    percent: float = 50.0,
    resource: str = "macs",
    target_speedup: float | None = None,
    align: int | str | None = "auto",
    criteria: CriterionConfig | Mapping[str, float] | None = None,
    steps: int = 1,
    limits: Limits | None = None,
    protected: Iterable[str] = (),
    approximate: Iterable[str] = (),
) -> PruningConfig:
    """:func:`prune_to`'s arguments as a run's ``pruning`` settings, over the ``default`` preset:
    ``steps`` equal steps of ``percent`` — or, to a speed-up, one step to the latency table's
    prediction and at most :data:`MAX_LATENCY_STEPS` steps corrected by measurement."""
    measuring = target_speedup is not None or resource == "latency"
    given: dict[str, Any] = {
        "prune_away_percent": percent,
        "resource": "latency" if measuring else resource,
        "target_speedup": target_speedup,
        "align": "none" if align is None else align,
        "step": {"percent": 100.0 if measuring else percent / steps},
        "max_steps": MAX_LATENCY_STEPS if measuring else steps,
        "protected": names(protected),
        "approximate": names(approximate),
    }
    if limits is not None:
        given.update(layer_limit_percent=limits.layer_percent, block_limit_percent=limits.block_percent,
                     min_channels=limits.min_channels, round_to=limits.round_to)  # fmt: skip
    if isinstance(criteria, CriterionConfig):
        given["criterion"] = {**to_dict(criteria), "weights": default_mix(criteria).weights}
    elif criteria is not None:
        given["criterion"] = {"weights": dict(criteria)}
    preset = plugins.get("preset", "default")
    return build(PruningConfig, beneath(preset, given), "prune_to")


def _timing(
    model: nn.Module,
    graph: ChannelGraph,
    config: PruningConfig,
    device: torch.device,
    tracing: tuple[CostFunctions, Factories],
    runtime: Runtime,
) -> tuple[nn.Module, tuple[LatencyTable, torch.Tensor]]:
    """The original as the teacher a latency budget measures against, and its latency table in
    ``runtime`` with the batch of one it was calibrated with."""
    teacher = copy.deepcopy(model).eval()
    cost_functions, plugins = tracing
    retrace = functools.partial(
        trace, example_input=graph.example, protected=config.protected, overrides=cost_functions, plugins=plugins,
        approximate=config.approximate,
    )  # fmt: skip
    return teacher, config.timing(teacher, graph, retrace, runtime, device)


def _cross_entropy(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    return F.cross_entropy(logits, batch["target"].long())
