"""Channel graph and surgery: "kill then remove" on every topology, and the refusals."""

import copy
import random

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cost.cost_model import CostModel
from prunekit.graph.constraints import sample
from prunekit.pruning.surgery import remove
from prunekit.testing import randomize

from .zoo import MODELS, SplitChunk


def kill(model: nn.Module, graph: pk.ChannelGraph, removal: dict) -> None:
    """Make the chosen channels exactly zero at the end of their channel-wise chain."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for gid, chans in removal.items():
            for member in graph.groups[gid].members:
                if member.role == "tensor":
                    continue  # a layer scale multiplies channels already zero
                local = [i for i, c in zip(member.local, member.channel) if c in chans]
                module = modules[member.layer]
                if member.role in ("out", "dw"):
                    if isinstance(module, nn.modules.conv._ConvTransposeNd) and member.role == "out":
                        per_in, per_out = module.in_channels // module.groups, module.weight.shape[1]
                        for j in local:  # weight is in × out/groups: output j reads group j // per_out
                            module.weight[j // per_out * per_in : (j // per_out + 1) * per_in, j % per_out] = 0
                    else:
                        module.weight[local] = 0
                    if module.bias is not None:
                        module.bias[local] = 0
                elif member.role == "norm" and isinstance(module, nn.modules.batchnorm._NormBase):
                    module.running_mean[local] = 0
                    module.bias[local] = 0
                elif member.role == "norm" and isinstance(module, nn.GroupNorm):
                    module.bias[local] = 0  # whole normalisation groups of zeros: their output is β


def random_removal(graph: pk.ChannelGraph, rng: random.Random) -> dict:
    """Random valid removals (in the units grouped layers allow) from about 60 % of the groups."""
    removal = {}
    for group in graph.groups:
        if rng.random() < 0.6 and (chosen := sample(group, rng.random(), rng)):
            removal[group.id] = chosen
    if not removal:  # at least one group, where any is prunable
        group = next((g for g in graph.groups if g.prunable), None)
        removal = {group.id: sample(group, 0.5, rng)} if group else {}
    return {gid: chosen for gid, chosen in removal.items() if chosen}


def outputs(model, x):
    out = model(x)
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.filterwarnings("ignore:the channels of .* they stay:RuntimeWarning")  # pinned channels: asserted elsewhere
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(MODELS))
def test_kill_then_remove(name, seed):
    build, size = MODELS[name]
    model = randomize(build(), seed)
    x = torch.randn(size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    rng = random.Random(f"{name}{seed}")
    for round_ in range(3):
        graph = pk.trace(model, x)
        removal = random_removal(graph, rng)
        if round_ and not removal:
            break  # a tiny model may run out of channels
        assert removal, "nothing prunable"
        killed = copy.deepcopy(model)
        kill(killed, graph, removal)
        predicted = CostModel(graph, include="all").predict(removal)
        remove(model, graph, removal)
        with torch.no_grad():
            for expected, got in zip(outputs(killed, x), outputs(model, x)):
                assert got.shape == expected.shape
                rel = (got - expected).abs().max() / expected.abs().max()
                assert rel <= 1e-5, f"{name} round {round_}: relative error {rel:.2e}"
        recount = pk.count(model, x, include="all")
        assert (predicted.macs, predicted.params) == (recount.macs, recount.params), name


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"inc.convv1": [0]}, "no layer 'inc.convv1' in the model; did you mean 'inc.conv1'? closest of 63: inc.conv1"),
        (
            {"outc": [0]},
            "channel 0 of outc cannot be removed: these channels are protected (outc); they reach the model",
        ),
        ({"inc.conv1": [4]}, "channel 4 of layer 'inc.conv1' is out of range 0..3"),
        ({"inc.conv1": [0, 1, 2, 3]}, "removing every channel of inc.conv1"),
        ({"inc.bn1": [0], "inc.conv1": [1, 2, 3]}, "removing every channel of inc.conv1"),
        ({"inc.relu1": [0]}, "has no output channels that can be pruned"),
    ],
)
def test_prune_errors_leave_the_model_bit_identical(request_, message):
    model = pk.get("model", "unet", width=4)
    before = state(model)
    with pytest.raises(pk.PruneError, match=message.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        pk.prune(model, torch.zeros(1, 1, 32, 32), request_)
    assert same(before, state(model))


def test_protected_and_pinned_channels_are_refused():
    model = SplitChunk()
    before = state(model)
    with (
        pytest.warns(RuntimeWarning, match="fixed size"),
        pytest.raises(
            pk.PruneError,
            match=r"channel 1 of fixed cannot be removed: these channels are split into pieces of fixed size by op "
            r"torch\.functional\.split",
        ),
    ):
        pk.prune(model, torch.zeros(1, 1, 8, 8), {"fixed": [1]})
    with (
        pytest.warns(RuntimeWarning, match="fixed size"),
        pytest.raises(pk.PruneError, match=r"these channels are protected \(stem\)"),
    ):
        pk.prune(model, torch.zeros(1, 1, 8, 8), {"stem": [1]}, protected=["stem"])
    assert same(before, state(model))


def test_naming_a_norm_prunes_its_whole_group():
    model = pk.get("model", "unet", width=4)
    pk.prune(model, torch.zeros(1, 1, 32, 32), {"down1.conv.bn2": [0, 2]})
    assert model.down1.conv.conv2.out_channels == 6
    assert model.down1.conv.bn2.num_features == 6
    assert model.down2.conv.conv1.in_channels == 6
    assert model.up3.conv.conv1.in_channels == 16 - 2  # the skip connection, at its offset in the cat


def test_unet_and_densenet_traversals_protect_their_heads():
    unet = pk.trace(pk.get("model", "unet", width=4), torch.zeros(1, 1, 32, 32))
    assert unet.traversal.name == "unet" and "up4.conv" in unet.traversal.blocks
    dense = pk.trace(pk.get("model", "densenet", channel_size=4), torch.zeros(1, 1, 32, 32))
    assert dense.traversal.name == "densenet" and "out_conv1" in dense.traversal.protected
    for graph, head in ((unet, "outc"), (dense, "out_conv1")):
        ((group, _),) = graph.members_of(head)
        assert not group.prunable and f"are protected ({head})" in group.pinned[0]


def test_apply_plan_rebuilds_the_pruned_model_and_round_trips_json():
    build = lambda: randomize(pk.get("model", "unet", width=4, n_classes=3))
    model, x = build(), torch.randn(1, 1, 32, 32, dtype=torch.float64)
    rng = random.Random(3)
    plan = pk.Plan()
    for _ in range(3):
        graph = pk.trace(model, x)
        plan = plan.then(remove(model, graph, random_removal(graph, rng)))
    plan = pk.Plan.from_json(plan.to_json())
    fresh = pk.apply_plan(build(), plan)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert pk.count(fresh, x).params == pk.count(model, x).params


def test_apply_plan_refuses_a_mismatched_model():
    model = pk.get("model", "unet", width=4)
    plan = pk.prune(model, torch.zeros(1, 1, 32, 32), {"inc.conv1": [1]})
    with pytest.raises(pk.PruneError, match="to have 4 out channels, the model has 8"):
        pk.apply_plan(pk.get("model", "unet", width=8), plan)
    with pytest.raises(pk.PruneError, match="not a prunekit plan"):
        pk.Plan.from_json("{}")


def test_marginal_cost_predicts_the_recount():
    model = pk.get("model", "densenet", channel_size=6)
    x = torch.zeros(1, 1, 32, 32)
    graph = pk.trace(model, x)
    cost = CostModel(graph)
    before = pk.count(model, x)
    assert (cost.macs, cost.params) == (before.macs, before.params)
    group = next(g for g in graph.groups if "down_block2.conv1" in g.producers)
    saved = cost.marginal(group.id, 2)
    assert saved.macs > 0 and saved.params > 0 and saved.elements > 0
    elements = sum(c.elements for c in cost.base.values())
    remove(model, graph, {group.id: {2}})
    after = pk.count(model, x)
    assert (before.macs - after.macs, before.params - after.params) == (saved.macs, saved.params)
    recount = CostModel(pk.trace(model, x))
    assert elements - sum(c.elements for c in recount.base.values()) == saved.elements


def test_densenet_half_of_every_group_at_full_resolution():
    model = pk.get("model", "densenet").eval()
    x = torch.zeros(1, 1, 640, 400)
    graph = pk.trace(model, x)
    removal = {g.id: set(g.prunable[::2]) for g in graph.groups if len(g.prunable) > 1}
    predicted = CostModel(graph).predict(removal)
    remove(model, graph, removal)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 640, 400)).shape == (1, 4, 640, 400)
    recount = pk.count(model, x)
    assert (recount.macs, recount.params) == (predicted.macs, predicted.params)
    assert recount.macs < 0.35 * pk.count(pk.get("model", "densenet"), x).macs


def test_unknown_op_on_channels_warns_once_naming_op_and_layers_and_lists_every_cause():
    class MatmulMix(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 4, 1)
            self.b = nn.Conv2d(4, 2, 1)
            self.mix = nn.Parameter(torch.eye(4))

        def forward(self, x):
            y = self.a(x)
            y = torch.einsum("nchw,cd->ndhw", y, self.mix)
            return self.b(y)

    with pytest.warns(RuntimeWarning) as record:
        graph = pk.trace(MatmulMix(), torch.zeros(1, 1, 4, 4))
    messages = [str(w.message) for w in record]
    assert messages == ["the channels of a are mixed or selected by op torch.functional.einsum; they stay"]
    assert graph.warnings == [*messages, "the channels of b reach the model output; they stay"]
    ((group, _),) = graph.members_of("a")
    assert group.prunable == []


@pytest.mark.parametrize(
    "before, c, after, expected",
    [
        ((2, 8, 4, 4), 1, (2, 8, 16), (1, 1)),
        ((2, 8, 4, 4), 1, (2, 128), (1, 16)),
        ((2, 8, 4, 4), 1, (2, 32, 4), (1, 4)),
        ((1, 8, 1, 1), 1, (1, 8), (1, 1)),
        ((8, 4, 4), 0, (1, 8, 4, 4), (1, 1)),
        ((2, 8, 4, 4), 1, (2, 2, 4, 16), None),  # channel shuffle style split
        ((2, 8, 4, 4), 1, (16, 4, 4), None),  # merged with the batch
    ],
)
def test_reshape_rule(before, c, after, expected):
    from prunekit.graph.shape_ops import reshaped

    assert reshaped(before, c, after) == expected


class Gain(nn.Module):
    """A per-channel learned gain whose layer type counts it but cannot cut it."""

    def __init__(self, c):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * self.gain.view(1, -1, 1, 1)


class GainType(pk.LayerType):
    name, module, kind = "gain", Gain, "norm"

    def flow(self, module):
        return pk.Flow.CHANNELWISE


class GainPlugin:
    @pk.hookimpl
    def prunekit_layer_types(self):
        return [GainType()]


def test_layer_type_without_surgery_leaves_its_channels_unprunable():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), Gain(4), nn.Conv2d(4, 2, 1), nn.Conv2d(2, 2, 1))
    x = torch.randn(1, 1, 6, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pk.registered(GainPlugin()), pytest.warns(RuntimeWarning, match="whose layer type 'gain' cannot remove"):
        graph = pk.trace(model, x)
        group = next(g for g in graph.groups if any(m.layer == "1" for m in g.members))
        assert not group.prunable and "cannot remove output channels" in str(group.pinned)
        with pytest.raises(pk.PruneError):
            pk.prune(model, x, {"0": [1]})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
