"""From criterion scores per layer to one importance per group channel.

Each criterion scores the output channels of every layer that owns prunable channels (producers,
depthwise convolutions, norms). Scores are normalised *per layer* with an explicit method, mapped
to group channels, reduced over the coupled layers of a group (``mean`` by default), and the
criteria are mixed as a weighted sum — IPAD's ``ω·weight + (1 − ω)·activation`` is the
two-criterion case. A channel no criterion can score is never selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch

from ..errors import ConfigError, suggest
from ..graph.channel_graph import OUTPUT_ROLES, ChannelGraph
from ..records import ScoredLayer

EPS = 1e-12
Normalization = Literal["none", "max", "l2", "mean", "rank"]
Reduction = Literal["mean", "sum", "max"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)
REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def scored_layers(graph: ChannelGraph) -> list[ScoredLayer]:
    """Layers with output channels in a group that has something to prune, in graph order."""
    names: dict[str, str] = {}
    for group in graph.groups:
        if group.prunable:
            for m in group.members:
                if m.role in OUTPUT_ROLES:
                    names.setdefault(m.layer, m.role)
    return [ScoredLayer(n, graph.layers[n].module, role, graph.layers[n].layer_type) for n, role in names.items()]


def normalize(scores: torch.Tensor, method: str) -> torch.Tensor:
    """Per-layer normalisation, so that one layer's scale does not decide for all layers.

    ``rank`` (the default) replaces the scores by their ranks 1/n … 1, and ``max`` and ``mean``
    scale them alike: global ranking then prunes all layers about equally. ``l2`` divides by the
    norm of the layer's scores, which grows with the square root of its width: wide layers, the
    most redundant, are pruned first (IPAD's choice).
    """
    s = scores.double()
    if method == "none":
        return s
    if method == "max":
        return s / (s.abs().max() + EPS)
    if method == "l2":
        return s / (s.norm() + EPS)
    if method == "mean":
        return s / (s.abs().mean() + EPS)
    if method == "rank":  # 1/n for the lowest … 1 for the highest
        return (s.argsort().argsort().double() + 1) / len(s)
    raise ConfigError(f"pruning.criterion.normalize: {method!r} is not allowed; {suggest(method, NORMALIZATIONS)}")


def group_scores(
    graph: ChannelGraph,
    criteria: Mapping[str, tuple[Any, float]],
    normalization: str = "rank",
    reduction: str = "mean",
) -> dict[int, torch.Tensor]:
    """Importance of every group channel (``inf`` where no criterion said anything)."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"pruning.criterion.reduce: {reduction!r} is not allowed; {suggest(reduction, REDUCTIONS)}")
    layers = scored_layers(graph)
    total = {g.id: torch.zeros(g.channels, dtype=torch.float64) for g in graph.groups}
    weights = {g.id: torch.zeros(g.channels, dtype=torch.float64) for g in graph.groups}
    for name, (criterion, weight) in criteria.items():
        if weight == 0:
            continue
        for gid, values in _reduced(graph, layers, criterion, name, normalization, reduction).items():
            seen = ~torch.isnan(values)
            total[gid][seen] += weight * values[seen]
            weights[gid][seen] += weight
    mixed = {gid: torch.where(weights[gid] > 0, total[gid] / weights[gid].clamp_min(EPS), torch.inf) for gid in total}
    if normalization == "rank":  # a mix of ranks is no longer uniform per layer: rank it again
        mixed = {gid: _rerank(values) for gid, values in mixed.items()}
    return mixed


def _rerank(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1/n … 1 of the scored channels; unscored ones (``inf``) stay unscored."""
    scored = torch.isfinite(values)
    out = values.clone()
    out[scored] = normalize(values[scored], "rank")
    return out


def _reduced(
    graph: ChannelGraph, layers: list[ScoredLayer], criterion: Any, name: str, normalization: str, reduction: str
) -> dict[int, torch.Tensor]:
    """One criterion's normalised scores, reduced over each group's layers (NaN: no score)."""
    acc: dict[int, list[torch.Tensor]] = {g.id: [] for g in graph.groups}
    for layer in layers:
        raw = criterion.score(layer)
        if raw is None:
            continue
        scores = normalize(torch.as_tensor(raw).detach().flatten().cpu(), normalization)
        expected = graph.layers[layer.name].channels("out")
        if len(scores) != expected:
            raise ConfigError(
                f"criterion {name!r} gave {len(scores)} scores for layer {layer.name!r}, "
                f"which has {expected} output channels"
            )
        for group, member in graph.members_of(layer.name):
            values = torch.full((group.channels,), torch.nan, dtype=torch.float64)
            sums = torch.zeros(group.channels, dtype=torch.float64).index_add_(
                0, torch.tensor(member.channel), scores[list(member.local)]
            )
            counts = torch.zeros(group.channels, dtype=torch.float64).index_add_(
                0, torch.tensor(member.channel), torch.ones(len(member.local), dtype=torch.float64)
            )
            values[counts > 0] = sums[counts > 0] / counts[counts > 0]  # a depthwise conv's rows of one channel
            acc[group.id].append(values)
    out = {}
    for gid, stack in acc.items():
        if stack:
            values = torch.stack(stack)
            out[gid] = _reduce(values, reduction)
    return out


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    present = ~torch.isnan(values)
    filled = torch.where(present, values, torch.zeros((), dtype=values.dtype))
    count = present.sum(0)
    if reduction == "sum":
        result = filled.sum(0)
    elif reduction == "max":
        result = torch.where(present, values, torch.full((), -torch.inf, dtype=values.dtype)).amax(0)
    else:
        result = filled.sum(0) / count.clamp_min(1)
    return torch.where(count > 0, result, torch.full((), torch.nan, dtype=values.dtype))
