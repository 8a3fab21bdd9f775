"""Grouped convolutions, GroupNorm and LayerNorm: exact cuts in the units they allow, refusals
that say why, LayerNorm cut only on request, and the share of channels a pruner may remove on
full-size networks of each family."""

import json
import random

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

import prunekit as pk
from prunekit.cost.cost_model import CostModel
from prunekit.graph.constraints import sample
from prunekit.plugin.manager import registered
from prunekit.pruning.surgery import removal_for, remove
from prunekit.run.pruner import Pruner
from prunekit.testing import check_model, prunable_share, randomize

from .conftest import NO_GUARD
from .families import FPN, ConvNeXt, LayerNorm2dPlugin
from .zoo import MODELS, ConvNeXtTiny, GroupedBottleneck

FAMILIES = ["grouped_bottleneck", "regnet", "groupnorm_fpn", "convnext"]


def flop_counter_macs(model, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.filterwarnings("ignore:the channels of .* they stay:RuntimeWarning")  # pinned channels: asserted elsewhere
@pytest.mark.parametrize("name", FAMILIES)
def test_random_valid_removals_are_exact_against_the_zeroed_model(name):
    build, size = MODELS[name]
    model = randomize(build())
    x = torch.randn(size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        removal = check_model(model, x, fraction=0.3, seed=seed, rtol=1e-9)
        assert removal


@pytest.mark.filterwarnings("ignore:the channels of .* they stay:RuntimeWarning")  # pinned channels: asserted elsewhere
@pytest.mark.parametrize("name", FAMILIES)
def test_the_recount_after_repeated_cuts_equals_flop_counter_mode(name):
    build, size = MODELS[name]
    model, x = build().eval(), torch.randn(size)
    rng = random.Random(name)
    for _ in range(3):
        graph = pk.trace(model, x)
        removal = {g.id: chosen for g in graph.groups if (chosen := sample(g, 0.25, rng))}
        predicted = CostModel(graph).predict(removal)
        remove(model, graph, removal)
        recount = pk.count(model, x)
        assert predicted.macs == recount.macs == flop_counter_macs(model, x)
        assert predicted.params == recount.params == sum(p.numel() for p in model.parameters())


def test_a_grouped_convolution_loses_as_many_channels_from_every_group():
    model, x = GroupedBottleneck().eval(), torch.randn(1, 3, 8, 8)
    before = state(model)
    with pytest.raises(
        pk.PruneError,
        match=r"layer b1\.0 has 4 groups, and each must lose as many of these channels as the others; "
        r"this removal takes \[1, 0, 0, 0\]",
    ):
        pk.prune(model, x, {"a1.0": [0]})
    with pytest.raises(pk.PruneError, match=r"would keep 1 of these channels per group; a grouped convolution keeps"):
        pk.prune(model, x, {"a1.0": [i for i in range(32) if i % 8]})
    assert same(before, state(model))
    pk.prune(model, x, {"a1.0": [0, 8, 16, 25]})
    assert (model.b1[0].in_channels, model.b1[0].groups, tuple(model.b1[0].weight.shape)) == (28, 4, (32, 7, 3, 3))
    pk.prune(model, x, {"b1.0": [3, 4, 13, 14, 16, 17, 30, 31]})  # two outputs from each group
    assert (model.b1[0].out_channels, model.c1.in_channels) == (24, 24)
    assert model(x).shape == (1, 2, 16, 16)


def test_groupnorm_loses_whole_groups_and_its_group_count_shrinks():
    model, x = MODELS["groupnorm_fpn"][0]().eval(), torch.randn(1, 1, 32, 32)
    norm = model.seg[0][1]
    assert (norm.num_groups, norm.num_channels) == (4, 8)
    with pytest.raises(pk.PruneError, match=r"normalises its channels in groups of 2, which go whole or not at all"):
        pk.prune(model, x, {"seg.0.0": [0]})
    pk.prune(model, x, {"seg.0.0": [2, 3]})
    assert all((s[1].num_groups, s[1].num_channels) == (3, 6) for s in model.seg)  # the sum couples the three


def test_layer_scales_and_grouped_cuts_replay_from_a_plan():
    build = lambda: randomize(GroupedBottleneck())
    model, x = build(), torch.randn(1, 3, 8, 8, dtype=torch.float64)
    plan = pk.prune(model, x, {"stem.0": [1, 5, 9, 13], "a2.0": [0, 6, 12, 18]})  # balanced over 2 and 4 groups
    assert tuple(model.scale.shape) == (1, 12, 1, 1)
    assert plan.keep["scale"]["tensor"] == [c for c in range(16) if c % 4 != 1]
    assert (model.b2[0].in_channels, model.b2[0].groups) == (20, 4)
    fresh = pk.apply_plan(build(), pk.Plan.from_json(plan.to_json()))
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), model(x))


def test_layer_norm_is_cut_only_on_request_and_the_deviation_is_reported():
    model, x = randomize(ConvNeXtTiny()), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    before = state(model)
    with (
        pytest.warns(RuntimeWarning, match=r"are mixed by layer blocks\.[01]\.block\.2 \(LayerNorm\); they stay"),
        pytest.raises(pk.PruneError, match=r"these channels are mixed by layer blocks\.0\.block\.2 \(LayerNorm\)"),
    ):
        pk.prune(model, x, {"stem.0": [0, 1]})
    with pytest.raises(pk.PruneError, match=r"unknown approximation 'layernorm'; did you mean 'layer_norm'\?"):
        pk.prune(model, x, {"stem.0": [0, 1]}, approximate=["layernorm"])
    assert same(before, state(model))
    reference = model(x)
    with pytest.warns(RuntimeWarning, match=r"blocks\.0\.block\.2, blocks\.1\.block\.2 are cut although no cut"):
        graph = pk.trace(model, x, approximate=["layer_norm"])
    predicted = CostModel(graph).predict(removal_for(graph, {"stem.0": [0, 1]}))
    with pytest.warns(RuntimeWarning):
        plan = pk.prune(model, x, {"stem.0": [0, 1]}, approximate=["layer_norm"])
    got = model(x)
    expected = (got - reference).norm() / reference.norm()
    assert plan.deviation == pytest.approx(float(expected.detach()), rel=1e-6) and 0 < plan.deviation < 10
    assert model.blocks[0].block[2].normalized_shape == (6,) and tuple(model.blocks[1].layer_scale.shape) == (6, 1, 1)
    assert (predicted.macs, predicted.params) == (pk.count(model, x).macs, pk.count(model, x).params)


def test_every_cause_of_a_refusal_is_one_warning_naming_the_op_and_the_layers():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 1), nn.Conv2d(1, 4, 1)
            self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)  # its groups straddle a and b
            self.c, self.d = nn.Conv2d(1, 6, 1), nn.Conv2d(1, 2, 1)
            self.head = nn.Conv2d(8 + 2, 2, 1)

        def forward(self, x):
            y = self.grouped(torch.cat([self.a(x), self.b(x)[:, [1, 0, 2, 3]]], 1))
            p, _ = torch.split(self.c(x), [2, 4], dim=1)
            return self.head(torch.cat([y, p + self.d(x)], 1))  # a residual over a split piece

    with pytest.warns(RuntimeWarning) as caught:
        graph = pk.trace(Mixed(), torch.zeros(1, 1, 4, 4))
    shown = sorted(str(w.message) for w in caught)
    assert shown == [
        "the channels of a are split into groups by layer grouped across the channels of several producers; they stay",
        "the channels of b are mixed or selected by op torch.Tensor.__getitem__; they stay",
        "the channels of c, d are split into pieces of fixed size by op torch.functional.split; they stay",
    ]
    assert "the channels of head reach the model output; they stay" in graph.warnings


def test_a_grouped_convolution_over_channels_of_several_producers_is_refused_by_name():
    class Straddle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 6, 1), nn.Conv2d(1, 2, 1)
            self.grouped = nn.Conv2d(8, 4, 1, groups=2)

        def forward(self, x):
            return self.grouped(torch.cat([self.a(x), self.b(x)], 1))

    with pytest.warns(RuntimeWarning, match=r"the channels of a, b are split into groups by layer grouped across"):
        graph = pk.trace(Straddle(), torch.zeros(1, 1, 2, 2))
    assert all(not g.prunable for g in graph.groups)


def test_full_size_families_are_almost_wholly_prunable():
    regnet = pk.trace(pk.get("model", "regnet"), torch.zeros(1, 3, 224, 224))  # RegNetX-400MF
    assert prunable_share(regnet) >= 0.85
    fpn = pk.trace(FPN(), torch.zeros(1, 3, 256, 256))  # ResNet-34 FPN, GroupNorm(32) decoder
    assert prunable_share(fpn) >= 0.95
    with registered(LayerNorm2dPlugin()) as plugins, pytest.warns(RuntimeWarning):
        convnext = ConvNeXt(dims=(24, 48, 96, 192), depths=(1, 1, 2, 1))
        plain = pk.trace(convnext, torch.zeros(1, 3, 64, 64), plugins=plugins)
        approximate = pk.trace(convnext, torch.zeros(1, 3, 64, 64), plugins=plugins, approximate=["layer_norm"])
    residual = [g for g in plain.groups if any(m.role == "tensor" for m in g.members)]
    assert residual and not any(g.prunable for g in residual)  # unchanged without the opt-in
    assert prunable_share(approximate) == 1.0


def test_the_loop_records_the_deviation_of_approximate_cuts(tmp_path):
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    data = DataLoader(TensorDataset(images, labels), batch_size=8)
    config = {
        "run_dir": str(tmp_path / "run"),
        "task": "classification",
        "retrain": {"epochs_per_step": 0},
        "finetune": {"epochs": 0},
        "pruning": {
            "prune_away_percent": 20,
            "step": {"percent": 20},
            "max_steps": 1,
            "approximate": ["layer_norm"],
            **NO_GUARD,
        },
    }
    with pytest.warns(RuntimeWarning, match="are cut although no cut"):
        Pruner(config, progress=False, model=ConvNeXtTiny(), train=data, val=data).prune()
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    (step,) = [r for r in steps if r["event"] == "step"]
    assert step["deviation"] > 0
    with pytest.raises(pk.ConfigError, match=r"pruning\.approximate: unknown approximation 'ln'"):
        Pruner(
            {**config, "pruning": {"approximate": ["ln"]}}, progress=False, model=ConvNeXtTiny(), train=data, val=data
        ).prune()
