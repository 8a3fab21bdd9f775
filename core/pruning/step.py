"""One pruning step as an object: trace → calibrate → score → select → cut, with a look at the
selection before the cut.

Every door into prunekit takes its steps through :class:`PruningStep`: :func:`prunekit.prune_to`
(one call), :meth:`prunekit.Pruner.steps` (your own training loop) and :meth:`prunekit.Pruner.run`
(the whole run). ``propose()`` returns a :class:`Proposal` — which channels of which layers go,
their scores, the predicted cost after — that can be printed, vetoed layer by layer or edited
before ``cut(proposal)`` removes its channels (like Torch-Pruning's interactive mode).
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .. import distributed
from ..cost.cost_model import Cost, CostModel
from ..cost.counting import CostReport, count
from ..cost.formatting import human, render_table
from ..cost.latency_table import LatencyTable
from ..eager import alignment
from ..errors import ConfigError, PruneError, suggest
from ..graph.channel_graph import ChannelGraph, trace
from ..graph.overrides import CostFunctions, Overrides
from ..schema import build
from ..seam import Factories, resolve
from .budget import ResourceBudget
from .calibration import calibrate, needs
from .plan import Plan
from .ranking import DATA_FREE, ActivationsAt, CriterionConfig, build_criteria, default_mix, preset_criteria
from .scoring import group_scores
from .selection import Limits, Reference, Selection, per_cost, select
from .structure import Structure, first_change, structure
from .surgery import remove


@dataclass
class Proposal:
    """What a step would cut: ``removal`` (group id -> channels), their ``scores``, and the cost
    the model is predicted to have after the cut. Print it for a table; :meth:`without` vetoes
    layers, :meth:`edited` replaces the removal — both return a new proposal, re-predicted."""

    graph: ChannelGraph
    cost: CostModel
    scores: dict[int, torch.Tensor]
    selection: Selection
    made_for: Structure = field(default_factory=dict, repr=False)  # the model's structure when proposed

    @property
    def removal(self) -> dict[int, list[int]]:
        return self.selection.removal

    @property
    def predicted(self) -> Cost:
        """MACs, parameters and (with a latency table) layer seconds after the cut."""
        return self.cost.predict(self.removal)

    def layers(self) -> dict[str, tuple[int, int]]:
        """Each layer that loses output channels: (channels removed, channels it has)."""
        out: dict[str, tuple[int, int]] = {}
        for gid, channels in self.removal.items():
            gone = set(channels)
            for member in self.graph.groups[gid].members:
                if member.role in ("out", "dw"):
                    removed = sum(1 for c in member.channel if c in gone)
                    before = out.get(member.layer, (0, self.graph.layers[member.layer].channels("out")))
                    out[member.layer] = (before[0] + removed, before[1])
        return out

    def without(self, *vetoed: str | int) -> Proposal:
        """This proposal without the groups that would change the named layers — those of their
        outputs and those feeding their inputs — or without the groups of the given ids."""
        drop = set()
        for item in vetoed:
            if isinstance(item, int) and not isinstance(item, bool):
                drop.add(self._group(item, "without"))
                continue
            if not isinstance(item, str):
                raise PruneError(f"Proposal.without: {item!r} is neither a layer name nor a group id")
            if item not in self.graph.layers:
                raise PruneError(
                    f"Proposal.without: no layer {item!r} in the model; {suggest(item, self.graph.layers)}"
                )
            found = {g.id for g, _ in self.graph.members_of(item, ("out", "dw", "norm", "in"))}
            drop |= found
        return self.edited({gid: chans for gid, chans in self.removal.items() if gid not in drop})

    def edited(self, removal: Mapping[int, Iterable[int]]) -> Proposal:
        """This proposal with ``removal`` (group id -> channel indices) instead, its cost predicted
        anew; a group or channel the graph does not have is a PruneError."""
        if not isinstance(removal, Mapping):
            raise PruneError(
                f"Proposal.edited: expected a mapping of group id to channels, not {type(removal).__name__}"
            )
        chosen = {self._group(g, "edited"): self._channels(g, chans) for g, chans in removal.items()}
        chosen = {g: chans for g, chans in chosen.items() if chans}
        after = self.cost.predict(chosen)
        filters = sum(len(c) for c in chosen.values())
        selection = Selection(chosen, after.macs, after.params, filters, set(), seconds=after.seconds)
        return replace(self, selection=selection)

    def _group(self, gid: Any, where: str) -> int:
        if isinstance(gid, bool) or not isinstance(gid, int) or not 0 <= gid < len(self.graph.groups):
            valid = f"0 to {len(self.graph.groups) - 1}" if self.graph.groups else "none"
            raise PruneError(f"Proposal.{where}: {gid!r} is no group of the model (group ids: {valid})")
        return gid

    def _channels(self, gid: int, channels: Any) -> list[int]:
        """Channel indices of group ``gid``: whole numbers in range, leaving one channel at least."""
        group = self.graph.groups[gid]
        size = group.channels
        if isinstance(channels, (str, torch.Tensor)) or not isinstance(channels, Iterable):
            raise PruneError(f"Proposal.edited: group {gid}: expected a list of channel indices, not {channels!r}")
        chosen = sorted({_index(c, gid, size) for c in channels})
        removable = set(group.prunable)
        for c in chosen:
            if c not in removable:
                why = ", ".join(group.pinned.get(c, ())) or "no layer of the group produces it"
                raise PruneError(f"Proposal.edited: group {gid}: channel {c} is kept ({why})")
        if len(chosen) >= size:
            raise PruneError(f"Proposal.edited: group {gid} would lose all its {size} channels; leave one at least")
        return chosen

    def table(self) -> str:
        rows = []
        for gid, channels in sorted(self.removal.items()):
            group = self.graph.groups[gid]
            saved = self.cost.macs - self.cost.predict({gid: channels}).macs
            scores = self.scores.get(gid)
            mean = f"{float(scores[channels].mean()):.3g}" if scores is not None else "-"
            producers = ", ".join(group.producers[:3]) + (" …" if len(group.producers) > 3 else "")
            rows.append([str(gid), producers, f"{len(channels)}/{group.channels}", mean, human(saved)])
        text = render_table(["group", "layers", "removed", "mean score", "MACs saved"], rows, right=(0, 2, 3, 4))
        after = self.predicted
        return text + (
            f"\n\nafter the cut: {human(after.macs)} MACs ({100 * after.macs / max(self.cost.macs, 1e-12):.1f} % of "
            f"now), {human(after.params)} params ({100 * after.params / max(self.cost.params, 1e-12):.1f} %)"
        )

    def __str__(self) -> str:
        return self.table()


def check_prediction(selection: Selection, after: CostReport) -> None:
    """Warn where the selection's prediction is not what the model counts after the cut: a cost
    function then depends on more than the shape it is given."""
    pairs = ((selection.macs, after.macs), (selection.params, after.params))
    if not all(math.isclose(predicted, counted, rel_tol=1e-9) for predicted, counted in pairs):
        warnings.warn(
            f"the selection predicted {human(selection.macs)} MACs and {human(selection.params)} parameters, the "
            f"pruned model counts {human(after.macs)} and {human(after.params)}: a cost function must depend only on "
            "its shape argument and the module's static attributes (kernel size, stride), not on the module's "
            "current channel counts or weights",
            RuntimeWarning,
            stacklevel=3,
        )


def _index(channel: Any, gid: int, size: int) -> int:
    """A channel index of a group of ``size`` channels: a whole number (an int, a NumPy or 0-d
    tensor integer — never a bool or a float) in range."""
    try:
        index = None if isinstance(channel, bool) else operator.index(channel)
    except TypeError:
        index = None
    if index is None or not 0 <= index < size:
        raise PruneError(f"Proposal.edited: group {gid}: {channel!r} is no channel index (0 to {size - 1})")
    return index


class PruningStep:
    """One pruning step on ``model`` (in place), under ``budget``.

    ``criteria`` ranks the channels: a :class:`~prunekit.pruning.CriterionConfig`, a mapping of
    criterion name to weight, or ``None`` — the default mix (weight norm and Taylor) when
    ``batches`` are given, weight norm (which needs no data) when not; a config naming no criteria
    gets the default mix. ``batches`` (dicts with ``image`` and ``target``) feed the calibration
    pass of criteria that observe activations or gradients (``loss(logits, batch)`` for
    gradients). ``limits``, ``protected``, ``approximate`` and the cost functions (``overrides``)
    are those of :func:`prunekit.trace` and the selection; ``reference`` is the
    original model's (limits count from it; default: this model's). ``align`` keeps every group's
    channel count at a multiple that runtimes run fast — ``"auto"``: the latency table's multiple
    where there is one, else the device's (:func:`prunekit.cost.alignment`: 16 on CPUs, 8 on
    GPUs); an int; or ``None`` — going below one multiple only once no aligned unit is left
    (``limits.round_to``, where given, wins). Under torchrun every rank calibrates, rank 0 selects
    and every rank cuts the same channels.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        budget: ResourceBudget,
        *,
        criteria: CriterionConfig | Mapping[str, float] | None = None,
        activations_at: ActivationsAt | None = None,
        limits: Limits | None = None,
        protected: Iterable[str] = (),
        approximate: Iterable[str] = (),
        overrides: Overrides | CostFunctions | None = None,
        include: str | Iterable[str] | None = None,
        batches: Iterable[dict[str, Any]] | None = None,
        loss: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor] | None = None,
        device: torch.device | str = "cpu",
        plugins: Factories | None = None,
        reference: Reference | None = None,
        table: LatencyTable | None = None,
        align: int | str | None = "auto",
        progress: bool = False,
    ) -> None:
        self.model, self.example, self.budget = model, example_input, budget
        plugins = resolve(plugins)
        self.criteria, tap = resolve_criteria(criteria, batches is not None, plugins)
        self.activations_at = activations_at or tap
        self.protected, self.approximate = tuple(names(protected)), tuple(names(approximate))
        self.cost_functions = CostFunctions.of(overrides)
        self.include, self.batches, self.loss = include, batches, loss
        self.device, self.plugins, self.reference = torch.device(device), plugins, reference
        self.table = table or budget.table
        self.limits = (limits or Limits()).aligned(resolve_align(align, self.table, self.device))
        self.progress = progress

    def trace(self, model: nn.Module | None = None) -> ChannelGraph:
        """The channel graph of the model (or of ``model``, a copy of it) on the example input."""
        return trace(
            self.model if model is None else model,
            self.example,
            self.protected,
            self.cost_functions,
            plugins=self.plugins,
            approximate=self.approximate,
        )

    def propose(self) -> Proposal:
        """Trace, calibrate, score and select — nothing is cut yet."""
        graph = self.trace()
        criteria = build_criteria(self.criteria, self.plugins)
        self._calibrate(graph, {name: criterion for name, (criterion, _) in criteria.items()})
        cost = CostModel(graph, self.include, self.table)
        made_for = structure(self.model)
        if not distributed.is_main():  # rank 0 selects; everyone cuts the same channels
            return Proposal(graph, cost, {}, distributed.broadcast(None), made_for)
        scores = group_scores(graph, criteria, self.criteria.normalize, self.criteria.reduce)
        if self.criteria.per_cost != "none":
            scores = per_cost(scores, cost, self.criteria.per_cost, self.criteria.element_macs)
        reference = self.reference or Reference.of(graph)
        choose = functools.partial(select, graph, scores, cost, reference, self.limits)
        selection = self.budget.choose(choose, cost, (self.model, graph))
        return Proposal(graph, cost, scores, distributed.broadcast(selection), made_for)

    def cut(self, proposal: Proposal | None = None, *, check: bool = True) -> Plan:
        """Remove the proposal's channels (a fresh proposal's when none is given) from the model,
        physically, and let the budget measure the result; returns the plan of this cut. With
        ``check`` and your cost functions the model is recounted, and a prediction the recount
        does not match is warned about (:func:`check_prediction`; a session checks its own recount)."""
        proposal = proposal or self.propose()
        if not isinstance(proposal, Proposal):
            raise PruneError(f"PruningStep.cut: expected a Proposal (from propose()), not {type(proposal).__name__}")
        change = first_change(proposal.made_for, structure(self.model)) if proposal.made_for else None
        if change is not None:
            raise PruneError(f"this proposal no longer fits the model ({change} since it was made); propose again")
        plan = remove(self.model, proposal.graph, proposal.removal)
        self.budget.after_cut(self.model, proposal.selection)
        if check and self.cost_functions:
            check_prediction(
                proposal.selection,
                count(self.model, self.example, self.cost_functions, self.include, plugins=self.plugins),
            )
        return plan

    def _calibrate(self, graph: ChannelGraph, observers: dict[str, Any]) -> None:
        wanted = needs(observers) & {"activations", "gradients"}
        if not wanted:
            return
        if self.batches is None:
            names = sorted(n for n, c in observers.items() if set(c.needs) & wanted)
            raise ConfigError(
                f"criteria {', '.join(names)} observe {' and '.join(sorted(wanted))}, which needs data; give batches "
                "(data=) or rank by a criterion that needs none, such as weight_norm"
            )
        calibrate(
            self.model,
            graph,
            observers,
            self.batches,
            loss=self.loss,
            device=self.device,
            progress=self.progress,
            tap=self.activations_at,
        )
        for criterion in observers.values():
            if distributed.active() and hasattr(criterion, "all_reduce"):
                criterion.all_reduce(distributed.all_reduce_sum)


def names(given: str | Iterable[str]) -> list[str]:
    """Layer names given as one name or many (a string is one name, never its letters)."""
    return [given] if isinstance(given, str) else list(given)


def resolve_align(align: int | str | None, table: LatencyTable | None, device: torch.device) -> int | None:
    """The channel multiple ``align`` asks for: ``"auto"`` the latency table's where there is one,
    else the device's; ``None`` or ``"none"``: none."""
    if align == "auto":
        return table.align if table is not None else alignment(device)
    if align is None or align == "none":
        return None
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ConfigError(f"align {align!r} is not allowed; give 'auto', 'none' or a channel multiple >= 1")
    return align


def resolve_criteria(
    criteria: CriterionConfig | Mapping[str, float] | None, with_data: bool, plugins: Factories
) -> tuple[CriterionConfig, ActivationsAt]:
    """The criterion mix a step ranks by, and where activation criteria observe."""
    if isinstance(criteria, CriterionConfig):
        return default_mix(criteria), "activation"
    if criteria is not None:
        return build(CriterionConfig, {"weights": dict(criteria)}, "criteria"), "activation"
    return preset_criteria("default", plugins) if with_data else (DATA_FREE, "activation")
