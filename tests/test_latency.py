"""The measured latency model and the latency budget: interpolation, the on-disk cache, the
cost model's seconds, aligned selection, and a loop that stops on its measurement."""

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cache import cache_dir
from prunekit.cost.cost_model import CostModel
from prunekit.cost.latency_table import (
    LatencyTable,
    LayerTimes,
    _counts,
    build_table,
    calibrate_table,
    layer_sum,
)
from prunekit.pruning import LatencyBudget, Limits, Reference, StepBudget, remove, select, thinned_copy
from prunekit.run.pruner import Pruner

from .conftest import NO_GUARD


def small():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 48, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(48, 3, 1),
    ).eval()  # fmt: skip


def test_an_entry_interpolates_bilinearly_and_extends_linearly():
    ins, outs = [8, 16, 32], [16, 64]
    entry = LayerTimes(ins, outs, [[0.001 * i + 0.0001 * o for o in outs] for i in ins])
    for c_in, c_out in ((8, 16), (12, 40), (32, 64), (4, 16), (40, 80)):
        assert entry.at(c_in, c_out) == pytest.approx(0.001 * c_in + 0.0001 * c_out)
    assert LayerTimes([4, 8], [4, 8], [[0.001], [0.003]], diagonal=True).at(1, 1) == 0.0  # never negative


def test_grid_counts_stay_within_the_layer_and_on_its_multiples():
    assert _counts(24, 16, 1) == [8, 16, 24]
    assert _counts(256, 16, 1) == [8, 32, 64, 128, 256]
    assert _counts(48, 8, 2) == [4, 8, 16, 24, 48]
    assert _counts(4, 16, 1) == [4]


def test_the_table_covers_what_pruning_can_shrink_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(  # sized, not timed: a busy machine's noise is no part of what is cached
        "prunekit.cost.latency_table._in_turns",
        lambda variants, repeats: [1e-6 * sum(p.numel() for p in m.parameters()) + 1e-6 for m, _, _ in variants],
    )
    model, x = small(), torch.randn(1, 1, 16, 16)
    graph = pk.trace(model, x)
    table = build_table(graph, torch.device("cpu"), repeats=1, align=8)
    assert table.measured == len(table.entries) == 6 and cache_dir() == tmp_path
    assert table.entries[("0", 0)].ins == [1] and table.entries[("0", 0)].outs == [4, 8, 16, 32]
    assert table.entries[("3", 0)].ins == [4, 8, 16, 32]  # multiples of 8, and below 8 of the 2 groups
    assert table.entries[("3", 0)].outs == [4, 8, 16, 24, 48]
    assert table.entries[("5", 0)].outs == [3]  # the output layer: one point
    again = build_table(graph, torch.device("cpu"), repeats=1, align=8)
    assert again.measured == 0 and again.entries == table.entries
    (cached,) = (tmp_path / "latency").glob("*.json")
    cached.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="is unusable"):
        assert build_table(graph, torch.device("cpu"), repeats=1, align=8).measured == 6  # measured again


def test_inputs_past_an_alignment_multiple_are_priced_from_their_own_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    model, x = (
        nn.Sequential(nn.Conv2d(1, 48, 3, padding=1), nn.ReLU(), nn.Conv2d(48, 8, 1)).eval(),
        torch.randn(1, 1, 8, 8),
    )
    graph = pk.trace(model, x)
    table = build_table(graph, torch.device("cpu"), repeats=1, align=16)
    measured = table.entries[("2", 0)]
    assert (measured.ins, measured.off_ins, measured.outs) == ([8, 16, 32, 48], [17, 33], [8])
    assert len(measured.off_seconds) == 2 and table.entries[("1", 0)].off_ins == []  # not for channel-wise layers
    ins, off = [8, 16, 32, 48], [17, 33]
    table.entries[("2", 0)] = LayerTimes(
        ins, [8], [[1e-3 * c] for c in ins], off_ins=off, off_seconds=[[1e-2 * c] for c in off]
    )
    node = graph.layers["2"]
    assert table.layer_seconds(node, 0, 33, 8) == pytest.approx(0.33)  # one past 32: the slow path
    assert table.layer_seconds(node, 0, 40, 8) == pytest.approx(0.33)  # runs as one past 32 does
    assert table.layer_seconds(node, 0, 32, 8) == pytest.approx(0.032)
    assert table.layer_seconds(node, 0, 48, 8) == pytest.approx(0.048)  # the full count was measured as it is
    assert table.layer_seconds(node, 0, 5, 8) == pytest.approx(0.005)  # below one multiple: measured at 8
    table.stepped = False  # ranking channel by channel reads the smooth, aligned curve
    assert table.layer_seconds(node, 0, 33, 8) == pytest.approx(0.033)
    table.stepped = True  # one off count (a layer of 32 inputs): 17–31 run alike
    table.entries[("2", 0)] = LayerTimes([8, 16, 32], [8], [[1e-3 * c] for c in (8, 16, 32)], False, [17], [[0.034]])
    assert [table.layer_seconds(node, 0, c, 8) for c in (17, 25, 31)] == pytest.approx([0.034] * 3)
    grouped = LayerTimes([24, 48, 96], [8], [[1e-3 * c] for c in (24, 48, 96)], False, [27, 51], [[0.27], [0.51]])
    table.entries[("2", 0)] = grouped  # three groups: 24 and 48 are on its grid, though not multiples of 16
    assert table.layer_seconds(node, 0, 24, 8) == pytest.approx(0.024)
    assert table.layer_seconds(node, 0, 40, 8) == pytest.approx(0.27)
    assert table.layer_seconds(node, 0, 45, 8) == pytest.approx(0.45)  # no measured stair: the ratio at 45


def test_calibration_brings_every_layer_to_the_level_of_one_set_of_rounds(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    model, x = small(), torch.randn(1, 1, 32, 32)
    graph = pk.trace(model, x)
    table = build_table(graph, torch.device("cpu"), repeats=1, align=8)
    entry = table.entries[("3", 0)]
    assert entry.off_ins == [10, 18]  # the grouped convolution's inputs, one group channel past a multiple
    level = entry.at(32, 48)
    shape = [[t / entry.seconds[-1][-1] for t in row] for row in entry.seconds + entry.off_seconds]
    entry.seconds = [[100 * t for t in row] for row in entry.seconds]  # as if measured in a minute 100× busier
    entry.off_seconds = [[100 * t for t in row] for row in entry.off_seconds]
    thin = thinned_copy(model, lambda m: pk.trace(m, x), 8)
    also = calibrate_table(table, x, (model, graph), thin, repeats=3, also=[model, thin[0]])
    assert len(also) == 2 and all(t > 0 for t in also) and len(table.calibration) == 2
    leveled = table.entries[("3", 0)]
    assert leveled.at(32, 48) < 10 * level  # back to the level of its neighbours' rounds ...
    kept = [t / leveled.seconds[-1][-1] for row in leveled.seconds + leveled.off_seconds for t in row]
    assert kept == pytest.approx([t for row in shape for t in row])  # ... in the same shape


def linear_table(graph):
    """A table whose every layer call takes 1 ns per MAC-like channel product: no timing noise."""
    entries = {}
    for name, node in graph.layers.items():
        for i, call in enumerate(node.calls):
            c_in, c_out = call.input[1], call.output[1]
            ins, outs = sorted({1, c_in}), sorted({1, c_out})
            entries[(name, i)] = LayerTimes(ins, outs, [[1e-9 * a * b for b in outs] for a in ins])
    return LatencyTable(entries, "test")


def test_the_cost_model_predicts_the_seconds_a_recount_of_the_pruned_graph_finds():
    model, x = small(), torch.randn(1, 1, 16, 16)
    graph = pk.trace(model, x)
    table = linear_table(graph)
    cost = CostModel(graph, latency=table)
    assert cost.seconds == pytest.approx(layer_sum(table, graph))
    removal = {g.id: list(range(0, g.channels, 4)) for g in graph.groups if len(g.prunable) >= 8}
    predicted = cost.predict(removal)
    remove(model, graph, removal)
    assert predicted.seconds == pytest.approx(layer_sum(table, pk.trace(model, x)))
    assert 0 < predicted.seconds < cost.seconds


def test_a_latency_budget_removes_its_seconds_in_aligned_units():
    model, x = small(), torch.randn(1, 1, 16, 16)
    graph = pk.trace(model, x)
    cost = CostModel(graph, latency=linear_table(graph))
    scores = {g.id: torch.rand(g.channels, generator=torch.Generator().manual_seed(g.id)) for g in graph.groups}
    budget = StepBudget("latency", 0.3 * cost.seconds)
    selection = select(graph, scores, cost, Reference.of(graph), Limits(round_to=8, free_below=True), budget)
    assert cost.seconds - selection.seconds >= 0.3 * cost.seconds and not selection.exhausted
    for gid, removed in selection.removal.items():
        left = graph.groups[gid].channels - len(removed)
        assert left % 8 == 0 or left < 8, (gid, left)


@pytest.mark.parametrize("align", ["auto", None])
def test_a_latency_budget_aligns_as_align_says_and_not_otherwise(align):
    model, x = small(), torch.randn(1, 1, 16, 16)
    graph = pk.trace(model, x)
    table = linear_table(graph)
    table.align = 16  # as measured on a CPU

    def clock(models, x, repeats):
        return [[1.0] * repeats for _ in models]

    budget = LatencyBudget(pk.count(model, x), table, model, x, 1.6, "latency", ("percent", 37), checks=0, clock=clock)
    removal = pk.PruningStep(model, x, budget, align=align, limits=Limits(100.0, 100.0)).propose().removal
    left = [graph.groups[gid].channels - len(removed) for gid, removed in removal.items()]
    assert all(n % 16 == 0 for n in left) == (align == "auto"), left


class UnseenWork(nn.Module):
    """Two convolutions and a matrix product at least as slow as they are, which no latency table
    sees (it is no layer): halving the convolutions' time makes the forward at most 1.33× faster."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.head = (
            nn.Conv2d(3, 64, 3, padding=1),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.Conv2d(64, 2, 1),
        )
        self.register_buffer("square", torch.randn(768, 768))

    def forward(self, x):
        torch.mm(self.square, self.square)  # ~450 M multiply-adds, against the convolutions' ~170 M
        return self.head(self.conv2(self.conv1(x).relu()).relu())


def test_a_selection_measured_short_of_the_target_is_chosen_again_before_the_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    model, x = UnseenWork().eval(), torch.randn(1, 3, 64, 64)
    graph = pk.trace(model, x)
    table = linear_table(graph)  # uncalibrated: predicts the layers' sum alone

    def device(models, x, repeats):  # the device: the table's layers plus the matrix product it does not see
        return [[layer_sum(table, graph) + layer_sum(table, pk.trace(m, x))] * repeats for m in models]

    removed = {}
    for checks in (0, 2):
        budget = LatencyBudget(pk.count(model, x), table, model, x, 2.0, "latency", ("percent", 100), checks=checks,
                               clock=device)  # fmt: skip
        step = pk.PruningStep(model, x, budget, criteria=pk.CriterionConfig({"weight_norm": 1.0}, normalize="l2"),
                              limits=pk.Limits(100.0, 100.0, 1, 16, True))  # fmt: skip
        removed[checks] = sum(map(len, step.propose().removal.values()))
    assert 0 < removed[0] < removed[2]  # predicted 2×, measured well under: chosen again, deeper
    assert [m.out_channels for m in (model.conv1, model.conv2)] == [64, 64]  # only copies were cut


@pytest.mark.parametrize("resource", ["latency", "macs"])
def test_the_loop_stops_on_the_measured_speedup_and_records_the_prediction(tiny_config, tmp_path, resource):
    config = tiny_config(
        tmp_path / "run",
        model={"name": "unet", "args": {"width": 8, "n_classes": 4}},
        data={"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 8, "n_val": 4}, "batch_size": 4},
        train={"epochs": 0},
        retrain={"epochs_per_step": 0},
        finetune={"epochs": 0},
        distillation={},
        pruning={"resource": resource, "target_speedup": 1.5, "step": {"percent": 20}, "max_steps": 6,
                 "latency_repeats": 3, **NO_GUARD},
    )  # fmt: skip
    Pruner(config, progress=False).prune()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    assert steps and all(s["latency_ms"] > 0 and s["predicted_speedup"] > 0 for s in steps)
    assert all(s["speedup_low"] < 1.5 for s in steps[:-1])  # it went on while the measurement's low end said so
    stopped = [r for r in records if r["event"] == "stop"]
    assert steps[-1]["speedup_low"] >= 1.5 or stopped or len(steps) == 6
    if resource == "macs":  # steps of a fifth of the MACs, and the percent (50) does not end the run
        assert abs(steps[0]["macs_percent"] - 80) < 3
        if all(s["speedup_low"] < 1.5 for s in steps[:2]):
            assert steps[2]["macs_percent"] < 50


def test_an_unwritable_cache_warns_and_the_table_is_still_built(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(blocker))
    model, x = small(), torch.randn(1, 1, 16, 16)
    with pytest.warns(RuntimeWarning, match=r"cannot write the latency table cache .* \(set PRUNEKIT_CACHE_DIR"):
        table = build_table(pk.trace(model, x), torch.device("cpu"), repeats=1, align=8)
    assert len(table.entries) == 6


#: MiB handed back to the system when a tensor of 8 MiB, then (glibc raises its threshold to
#: what was freed) one of 16 MiB is freed — before and after steady_allocator
RSS_AFTER_FREE = """
import os, torch
from prunekit.cost.latency import steady_allocator
def returned(mib):
    resident = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    x = torch.ones(mib * 2**18)
    held = resident()
    del x
    return (held - resident()) // 2**20
print(returned(8), steady_allocator(), returned(16))
"""


@pytest.mark.slow  # a process of its own: the allocator setting is process-wide
@pytest.mark.skipif(not Path("/proc/self/statm").exists() or platform.libc_ver()[0] != "glibc", reason="glibc on Linux")
def test_the_steady_allocator_keeps_freed_tensor_memory_for_reuse():
    run = subprocess.run([sys.executable, "-c", RSS_AFTER_FREE], capture_output=True, text=True, check=True)
    before, steady, after = run.stdout.split()
    assert int(before) >= 6  # a freed tensor goes back to the system (and is mapped afresh next time) ...
    assert steady == "True" and int(after) <= 2  # ... or stays on the heap, to be reused without page faults
