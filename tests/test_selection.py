"""Budgeted selection: limits are never exceeded, budgets are met, nothing selectable ends cleanly."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prunekit as pk
from prunekit.cost.cost_model import CostModel
from prunekit.pruning.scoring import group_scores
from prunekit.pruning.selection import Limits, Reference, StepBudget, per_cost, select, tiered_units, units
from prunekit.pruning.surgery import remove

X = torch.zeros(1, 1, 32, 32)


@pytest.fixture(scope="module")
def models():
    return {"unet": pk.get("model", "unet", width=4), "densenet": pk.get("model", "densenet", channel_size=6)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["unet", "densenet"]),
    layer=st.floats(5, 100),
    block=st.floats(5, 100),
    min_channels=st.integers(1, 3),
    round_to=st.sampled_from([None, 2, 4]),
    kind=st.sampled_from(["macs", "params", "filters"]),
    fraction=st.floats(0.05, 0.9),
    criterion=st.sampled_from(["weight_norm", "random"]),
)
def test_limits_hold_for_random_configs(models, name, layer, block, min_channels, round_to, kind, fraction, criterion):
    model = copy.deepcopy(models[name])
    graph = pk.trace(model, X)
    cost = CostModel(graph)
    ref = Reference.of(graph)
    scores = group_scores(graph, {criterion: (pk.get("criterion", criterion), 1.0)})
    total = {"macs": cost.macs, "params": cost.params, "filters": sum(len(g.prunable) for g in graph.groups)}[kind]
    limits = Limits(layer, block, min_channels, round_to)
    selection = select(graph, scores, cost, ref, limits, StepBudget(kind, fraction * total))
    remove(model, graph, selection.removal)

    after = Reference.of(pk.trace(model, X))
    for name_, original in ref.layers.items():
        if original:
            assert 100 * (original - after.layers[name_]) / original <= layer + 1e-6, name_
    for name_, original in ref.blocks.items():
        if original:
            assert 100 * (original - after.blocks[name_]) / original <= block + 1e-6, name_
    for group in graph.groups:
        kept = group.channels - len(selection.removal.get(group.id, ()))
        if group.id in selection.removal:
            assert kept >= min_channels
            if round_to:
                assert kept % round_to == 0
    removed = {
        "macs": cost.macs - selection.macs,
        "params": cost.params - selection.params,
        "filters": selection.filters,
    }[kind]
    assert selection.exhausted or removed >= fraction * total
    recount = pk.count(model, X)
    assert (recount.macs, recount.params) == (selection.macs, selection.params)


def test_floor_stops_the_step_at_the_overall_target():
    model = pk.get("model", "unet", width=8)
    graph = pk.trace(model, X)
    cost = CostModel(graph)
    scores = group_scores(graph, {"weight_norm": (pk.get("criterion", "weight_norm"), 1.0)})
    selection = select(
        graph, scores, cost, Reference.of(graph), Limits(), StepBudget("macs", cost.macs, floor_macs=0.6 * cost.macs)
    )
    assert 0.5 * cost.macs < selection.macs <= 0.6 * cost.macs


def test_nothing_selectable_returns_an_empty_exhausted_selection():
    model = pk.get("model", "unet", width=4)
    graph = pk.trace(model, X)
    cost = CostModel(graph)
    scores = group_scores(graph, {"weight_norm": (pk.get("criterion", "weight_norm"), 1.0)})
    selection = select(graph, scores, cost, Reference.of(graph), Limits(layer_percent=0.0), StepBudget("filters", 10))
    assert selection.removal == {} and selection.exhausted and selection.at_limit


def test_units_respect_round_to_and_min_channels():
    group = pk.Group(0, 10, [pk.Member("a", "out", tuple(range(10)), tuple(range(10)))])
    scores = torch.arange(10, dtype=torch.float64).flip(0)  # channel 9 is the least important
    assert units(group, scores, Limits(min_channels=3)) == [[9], [8], [7], [6], [5], [4], [3]]
    assert units(group, scores, Limits(round_to=4)) == [[9, 8], [7, 6, 5, 4]]
    group.pinned = {9: ("is protected",)}
    assert units(group, scores, Limits(min_channels=8)) == [[8], [7]]


@pytest.mark.parametrize("measure", ["macs", "params", "latency"])
def test_per_cost_divides_importance_by_the_saving(measure):
    model = pk.get("model", "unet", width=8)
    graph = pk.trace(model, torch.zeros(1, 1, 32, 48))
    cost = CostModel(graph)
    scores = group_scores(graph, {"weight_norm": (pk.get("criterion", "weight_norm"), 1.0)})
    ratios = per_cost(scores, cost, measure, element_macs=3.0)
    for group in graph.groups:
        for ch in group.prunable[:2]:
            saved = cost.marginal(group.id, ch)
            price = saved.macs + 3.0 * saved.elements if measure == "latency" else getattr(saved, measure)
            assert ratios[group.id][ch] == pytest.approx(scores[group.id][ch] / price)


def test_latency_ranking_thins_the_full_resolution_layers_first():
    """Equal importance everywhere: the channels that save the most time per unit go first."""
    model = pk.get("model", "unet", width=8)
    x = torch.zeros(1, 1, 64, 96)
    graph = pk.trace(model, x)
    cost = CostModel(graph)
    flat = {g.id: torch.ones(g.channels, dtype=torch.float64) for g in graph.groups}
    selection = select(
        graph, per_cost(flat, cost, "latency"), cost, Reference.of(graph), Limits(), StepBudget("macs", 0.2 * cost.macs)
    )
    thinned = {n for g in graph.groups for n in g.producers if g.id in selection.removal}
    assert thinned and thinned <= {"inc.conv1", "inc.conv2", "up4.conv.conv1", "up4.conv.conv2"}


def test_aligned_units_keep_multiples_and_go_below_one_multiple_last_one_channel_at_a_time():
    group = pk.Group(0, 24, [pk.Member("a", "out", tuple(range(24)), tuple(range(24)))])
    scores = torch.arange(24, dtype=torch.float64).flip(0)  # channel 23 is the least important
    found = [(u.tier, len(u.channels)) for u in tiered_units(group, scores, Limits(round_to=8, free_below=True))]
    assert found == [(0, 8), (0, 8)] + [(2, 1)] * 7  # 24 → 16 → 8, then below 8 on the last rung
    cells = tuple(tuple((c,) for c in range(start, start + 10)) for start in (0, 10, 20))  # a grouped layer's
    odd = pk.Group(1, 30, [pk.Member("b", "out", tuple(range(30)), tuple(range(30)))], cells=cells)  # units of 3
    found = [(u.tier, len(u.channels)) for u in tiered_units(odd, torch.rand(30), Limits(round_to=8, free_below=True))]
    assert found == [(0, 6), (1, 12), (2, 6), (2, 3)]  # 30 → 24 (8s), → 12 (4s), below 8: 6 and 3
    assert [len(u) for u in units(group, scores, Limits(round_to=8))] == [8, 8]  # round_to alone: never below


ALIGNED = {"unet": ("unet", {"width": 8}), "densenet": ("densenet", {"channel_size": 16}),
           "regnet": ("regnet", {"in_channels": 1})}  # fmt: skip


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(sorted(ALIGNED)),
    percent=st.floats(20, 85),
    limit=st.sampled_from([50.0, 75.0, 100.0]),
    align=st.sampled_from([8, 16]),
)
def test_alignment_keeps_counts_on_multiples_and_reaches_what_unaligned_pruning_reaches(name, percent, limit, align):
    kind, args = ALIGNED[name]
    torch.manual_seed(0)
    model, x = pk.get("model", kind, **args), torch.zeros(1, 1, 32, 32)
    limits = Limits(limit, limit)
    unaligned = pk.prune_to(model, x, percent, limits=limits, align=None)
    aligned = pk.prune_to(model, x, percent, limits=limits, align=align)
    target = (1 - percent / 100) * unaligned.before.macs
    if unaligned.after.macs <= target:  # reachable: reached, or missed by less than one multiple per group
        # without limits, one group's multiple at most; a limit stops a group on the last multiple
        # above it, where single channels go on to it: one multiple more in each group a limit binds
        graph = pk.trace(model, x)
        cost = CostModel(graph)
        multiple = [cost.macs - cost.predict({g.id: g.prunable[:align]}).macs for g in graph.groups if g.prunable]
        worth = max(multiple) if limit == 100.0 else sum(multiple)
        assert aligned.after.macs <= target + worth
    assert pk.count(aligned.model, x).macs == aligned.after.macs
    if limit == 100.0:  # no limit breaks a merged unit: every count cut is on a multiple or below one
        before = {tuple(g.producers): g.channels for g in pk.trace(model, x).groups}
        for group in pk.trace(aligned.model, x).groups:  # (a grouped layer's units decide its counts)
            if not group.constraints and group.channels != before.get(tuple(group.producers), group.channels):
                assert group.channels % align == 0 or group.channels < align, (group.producers, group.channels)
