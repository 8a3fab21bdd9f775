"""Criteria against hand-computed scores; streaming equals the full batch; normalisation and
combination of criteria into group scores."""

import math

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.pruning.calibration import calibrate, tapped
from prunekit.pruning.scoring import ScoredLayer, group_scores, normalize

# N=2, C=3, H=1, W=2; channel means over the batch: [1,2], [4,6], [1,1]; layer mean [2,3]
ACT = torch.tensor([[[[0.0, 0.0]], [[4.0, 4.0]], [[1.0, 1.0]]], [[[2.0, 4.0]], [[4.0, 8.0]], [[1.0, 1.0]]]])


def layer_for(module, role="out", name="layer"):
    return ScoredLayer(name, module, role, pk.manager().layer_type(type(module)))


def observed(criterion, chunks, gradients=None):
    criterion.reset()
    for i, chunk in enumerate(chunks):
        criterion.observe("layer", chunk, None if gradients is None else gradients[i])
    return criterion.score(layer_for(nn.Conv2d(1, 3, 1)))


@pytest.mark.parametrize("p, expected", [(1, [1.0, 2.5, 1.5]), (2, [1.0, math.sqrt(6.5), math.sqrt(2.5)])])
def test_activation_deviation_by_hand(p, expected):
    # D_k = mean_k - layer mean: [-1,-1], [2,3], [-1,-2]
    scores = observed(pk.get("criterion", "activation_deviation", p=p), [ACT])
    assert torch.allclose(scores, torch.tensor(expected, dtype=torch.float64))


def test_activation_deviation_streams_over_batches():
    criterion = pk.get("criterion", "activation_deviation", p=2)
    assert torch.allclose(observed(criterion, [ACT[:1], ACT[1:]]), observed(criterion, [ACT]))
    big = torch.randn(12, 5, 4, 3)
    assert torch.allclose(observed(criterion, big.split(5)), observed(criterion, [big]))


def test_activation_mean_by_hand_and_streaming():
    criterion = pk.get("criterion", "activation_mean")
    expected = torch.tensor([(0 + 0 + 4 + 16) / 4, (16 + 16 + 16 + 64) / 4, 1.0], dtype=torch.float64)
    assert torch.allclose(observed(criterion, [ACT]), expected)
    assert torch.allclose(observed(criterion, [ACT[:1], ACT[1:]]), expected)


def test_taylor_is_the_absolute_value_of_the_summed_product():
    grad = torch.ones_like(ACT)
    grad[0, 1] = torch.tensor([[1.0, -1.0]])  # 4·1 + 4·(−1) = 0 for sample 0, channel 1
    grad[1, 0] = -1.0
    # per sample |Σ a·g|: ch0 [0, 6], ch1 [0, 12], ch2 [2, 2] -> means 3, 6, 2
    scores = observed(pk.get("criterion", "taylor"), [ACT], [grad])
    assert torch.allclose(scores, torch.tensor([3.0, 6.0, 2.0], dtype=torch.float64))
    assert torch.allclose(observed(pk.get("criterion", "taylor"), [ACT[:1], ACT[1:]], [grad[:1], grad[1:]]), scores)


@pytest.mark.parametrize("name", ["activation_deviation", "activation_mean", "taylor"])
def test_activation_criteria_accept_linear_outputs(name):
    # a Linear layer's output is N×C: the same scores as an N×C×1×1 map
    flat, grad = ACT.mean((2, 3)), torch.randn(2, 3)
    as_map = observed(pk.get("criterion", name), [flat[..., None, None]], [grad[..., None, None]])
    assert torch.allclose(observed(pk.get("criterion", name), [flat], [grad]), as_map)


@pytest.mark.parametrize("p, expected", [(1, [6.0, 3.0]), (2, [math.sqrt(14.0), math.sqrt(5.0)])])
def test_weight_norm_by_hand(p, expected):
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.0, 2.0, -1.0]]).view(2, 3, 1, 1))
    scores = pk.get("criterion", "weight_norm", p=p).score(layer_for(conv))
    assert torch.allclose(scores, torch.tensor(expected, dtype=torch.float64))


def test_weight_norm_of_a_transposed_conv_uses_output_columns():
    conv = nn.ConvTranspose2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]]).view(2, 3, 1, 1))
    scores = pk.get("criterion", "weight_norm", p=1).score(layer_for(conv))
    assert torch.allclose(scores, torch.tensor([2.0, 2.0, 8.0], dtype=torch.float64))


def test_bn_scale_scores_norm_layers_only():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    criterion = pk.get("criterion", "bn_scale")
    assert torch.allclose(criterion.score(layer_for(bn, "norm")), torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64))
    assert criterion.score(layer_for(nn.Conv2d(1, 3, 1))) is None


def test_random_is_seeded():
    conv = layer_for(nn.Conv2d(1, 8, 1))
    a, b = pk.get("criterion", "random", seed=1), pk.get("criterion", "random", seed=2)
    assert torch.equal(a.score(conv), pk.get("criterion", "random", seed=1).score(conv))
    assert not torch.equal(a.score(conv), b.score(conv))


def test_bad_p_is_a_config_error():
    with pytest.raises(pk.ConfigError, match="p: 3 is not allowed; valid: 1, 2"):
        pk.get("criterion", "weight_norm", p=3)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("none", [1.0, 2.0, 5.0]),
        ("max", [0.2, 0.4, 1.0]),
        ("l2", [1 / math.sqrt(30), 2 / math.sqrt(30), 5 / math.sqrt(30)]),
        ("mean", [0.375, 0.75, 1.875]),
        ("rank", [1 / 3, 2 / 3, 1.0]),
    ],
)
def test_normalisations(method, expected):
    assert torch.allclose(normalize(torch.tensor([1.0, 2.0, 5.0]), method), torch.tensor(expected, dtype=torch.float64))


class Fixed:
    """A criterion with given scores per layer name."""

    needs = frozenset({"weights"})

    def __init__(self, table):
        self.table = table

    def reset(self):
        pass

    def observe(self, *args):
        pass

    def score(self, layer):
        return torch.tensor(self.table[layer.name], dtype=torch.float64) if layer.name in self.table else None


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1)
        self.b = nn.Conv2d(1, 3, 1)
        self.c = nn.Conv2d(1, 2, 1)
        self.head = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.head(self.a(x) + self.b(x)) + self.c(x).sum(1, keepdim=True)


def test_group_scores_reduce_coupled_layers_and_mix_criteria():
    graph = pk.trace(Residual(), torch.zeros(1, 1, 2, 2))
    ab = next(g for g in graph.groups if "a" in g.producers)
    c = next(g for g in graph.groups if "c" in g.producers)
    first = Fixed({"a": [1.0, 2.0, 3.0], "b": [3.0, 2.0, 1.0], "c": [1.0, 3.0]})
    second = Fixed({"a": [0.0, 0.0, 6.0]})  # says nothing about b and c
    scores = group_scores(graph, {"first": (first, 0.25), "second": (second, 0.75)}, "none", "mean")
    # group a+b: first -> mean of the two layers [2, 2, 2]; second -> only a [0, 0, 6]
    assert torch.allclose(scores[ab.id], torch.tensor([0.5, 0.5, 5.0], dtype=torch.float64))
    # group c: only the first criterion has a score, so it alone decides
    assert torch.allclose(scores[c.id], torch.tensor([1.0, 3.0], dtype=torch.float64))
    maxed = group_scores(graph, {"first": (first, 1.0)}, "none", "max")
    assert torch.allclose(maxed[ab.id], torch.tensor([3.0, 2.0, 3.0], dtype=torch.float64))


def test_rank_normalisation_ranks_the_mix_again():
    """Two criteria that agree on one layer and disagree on another still give every group the
    same spread of scores, so the global ranking takes equally from both."""
    graph = pk.trace(Residual(), torch.zeros(1, 1, 2, 2))
    agree = Fixed({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "c": [1.0, 2.0]})
    disagree = Fixed({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "c": [2.0, 1.0]})
    scores = group_scores(graph, {"x": (agree, 0.5), "y": (disagree, 0.5)}, "rank", "mean")
    for group in graph.groups:
        if group.id in scores and torch.isfinite(scores[group.id]).all():
            expected = torch.arange(1, group.channels + 1, dtype=torch.float64) / group.channels
            assert torch.equal(scores[group.id].sort().values, expected)


def test_presets_sit_beneath_the_config():
    ipad = pk.load_config({"pruning": {"preset": "ipad", "layer_limit_percent": 60}}).pruning
    assert ipad.criterion.weights == {"weight_norm": 0.5, "activation_deviation": 0.5}
    assert (ipad.prune_away_percent, ipad.block_limit_percent, ipad.layer_limit_percent) == (74, 75, 60)
    own = pk.load_config({"pruning": {"criterion": {"weights": {"taylor": 1.0}, "normalize": "rank"}}}).pruning
    assert own.criterion.weights == {"taylor": 1.0} and own.criterion.normalize == "rank"
    assert pk.load_config({}).pruning.criterion.weights == {}  # the default preset leaves the mix to the task
    assert pk.load_config({"pruning": {"preset": None}}).pruning.criterion.weights == {}
    with pytest.raises(pk.PluginError, match="unknown preset 'ipda'; did you mean 'ipad'"):
        pk.load_config({"pruning": {"preset": "ipda"}})


def _captured(model, names, x):
    """The outputs of the named modules for input ``x`` (plain forward hooks)."""
    outputs, modules = {}, dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o.detach().clone())) for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outputs


@pytest.mark.parametrize("tap, seen", [("output", "inc.conv2"), ("activation", "inc.relu2")])
def test_calibration_taps_the_raw_output_or_the_activation_after_it(tap, seen):
    model = pk.get("model", "unet", width=4, activation="leaky_relu").eval()
    x = torch.randn(3, 1, 32, 48)
    graph = pk.trace(model, x)
    criterion = pk.get("criterion", "activation_deviation", p=2)
    calibrate(model, graph, {"adc": criterion}, [{"image": x}], progress=False, tap=tap)
    expected = observed(pk.get("criterion", "activation_deviation", p=2), [_captured(model, [seen], x)[seen]])
    assert torch.allclose(criterion.score(layer_for(model.inc.conv2, name="inc.conv2")), expected)


def test_a_reused_activation_module_is_not_a_tap():
    model = pk.get("model", "densenet", channel_size=4)
    graph = pk.trace(model, torch.zeros(1, 1, 32, 32))
    assert tapped(graph, "activation") == tapped(graph, "output")
    with pytest.raises(pk.ConfigError, match="activations_at"):
        tapped(graph, "relu")


def test_a_config_naming_no_criteria_ranks_by_its_task_s_mix():
    from prunekit.pruning.ranking import DEFAULT_MIX, default_mix

    none = pk.load_config({}).pruning.criterion
    own = pk.load_config({"pruning": {"criterion": {"weights": {"bn_scale": 1}}}}).pruning.criterion
    classification, segmentation = pk.get("task", "classification"), pk.get("task", "segmentation")
    assert default_mix(none, classification).weights == {"taylor": 1.0}
    assert default_mix(none, segmentation).weights == DEFAULT_MIX == default_mix(none).weights
    assert default_mix(own, classification).weights == {"bn_scale": 1}
    assert default_mix(none, classification).normalize == "rank"  # the rest of the preset stays

    class Hostile:
        name, default_criterion = "hostile", {"taylor": -1.0}

    with pytest.raises(
        pk.ConfigError, match=r"task 'hostile': default_criterion\.weights\.taylor: -1\.0 is out of range"
    ):
        default_mix(none, Hostile())
