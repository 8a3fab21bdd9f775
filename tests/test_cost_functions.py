"""Your cost functions: they price layers, never change how they are cut, and drive the budget."""

import math
import warnings

import pytest
import torch
import yaml
from torch import nn

import prunekit as pk
from prunekit.cli import main
from prunekit.cost.cost_model import CostModel
from prunekit.pruning.surgery import remove
from prunekit.run.pruner import Pruner


def conv_macs(module, shape):
    """What the conv layer type counts, written as a user would."""
    return pk.numel(shape.output) * shape.in_channels // shape.groups * math.prod(shape.kernel)


def traffic(module, shape):
    """MACs plus 64 per activation element read or written: full-resolution layers cost more."""
    return conv_macs(module, shape) + 64 * (pk.numel(shape.input) + pk.numel(shape.output))


# -- an override prices a layer, it never changes the cut ------------------------------------------------------------
CHANNELS_LAST = (2, 3, 4)


#: (matches the class, builds a 4-channel instance), the first match wins
CONSTRUCTORS = (
    (lambda c: c.__name__ == "LayerNorm2d", lambda c: c(4)),  # torchvision's: over the channels of NCHW
    (lambda c: issubclass(c, nn.Linear), lambda c: c(4, 4)),
    (lambda c: issubclass(c, nn.LayerNorm), lambda c: c(4)),
    (lambda c: issubclass(c, nn.modules.conv._ConvNd), lambda c: c(4, 6, 3, padding=1)),
    (lambda c: issubclass(c, (nn.modules.batchnorm._BatchNorm, nn.PReLU)), lambda c: c(4)),
    (lambda c: issubclass(c, nn.modules.instancenorm._InstanceNorm), lambda c: c(4, affine=True)),
    (lambda c: issubclass(c, nn.GroupNorm), lambda c: c(2, 4)),
    (lambda c: issubclass(c, nn.Threshold), lambda c: c(0.1, 0.0)),
    (lambda c: issubclass(c, nn.Upsample), lambda c: c(scale_factor=2)),
    (lambda c: "Pool" in c.__name__, lambda c: c(2)),
    (lambda c: True, lambda c: c()),
)


def _instance(cls: type) -> tuple[nn.Module, tuple[int, ...]]:
    """A module of built-in layer-type class ``cls`` with 4 channels, and an input size for it."""
    module = next(build(cls) for matches, build in CONSTRUCTORS if matches(cls))
    if isinstance(module, (nn.Linear, nn.LayerNorm)) and cls.__name__ != "LayerNorm2d":
        return module, CHANNELS_LAST
    dims = {"1d": 1, "3d": 3}.get(cls.__name__[-2:].lower(), 2)
    return module, (2, 4, *([6] * dims))


def _sandwich(module: nn.Module, size: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    """``module`` between a producer and a consumer of its channels (dim 1, or last for channels-last layers)."""
    x = torch.zeros(size)
    if size == CHANNELS_LAST:
        return nn.Sequential(nn.Linear(4, 4), module, nn.Linear(4, 3)), x
    conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(size)]
    with torch.no_grad():
        c_out = module.eval()(x).shape[1]
    return nn.Sequential(conv(4, 4, 1), module, conv(c_out, 3, 1)).eval(), x


def _groups(graph):
    return sorted((g.channels, tuple(g.prunable), tuple(sorted(map(repr, g.members)))) for g in graph.groups)


BUILT_IN = pk.manager().registry("layer_type")


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_an_override_on_a_built_in_layer_type_keeps_its_groups(name):
    layer_type = BUILT_IN[name].record
    counted = layer_type.module  # a class, or its import path (the zoos' LayerNorm2d, where the zoo imports)
    if isinstance(counted, str):
        module, _, cls = counted.rpartition(".")
        counted = getattr(pytest.importorskip(module), cls)
    model, x = _sandwich(*_instance(counted))
    allow = [layer_type.approximation] if layer_type.approximation else []  # LayerNorm is cut only when allowed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the same pinning warnings either way
        plain = pk.trace(model, x, approximate=allow)
        priced = pk.trace(model, x, overrides={type(model[1]): lambda m, s: 7}, approximate=allow)
    assert _groups(priced) == _groups(plain)
    assert any(g.prunable for g in plain.groups)
    assert pk.count(model, x, overrides={type(model[1]): lambda m, s: 7}).layer("1").macs == 7


def test_a_custom_layer_is_counted_by_its_function_and_named_in_a_warning():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(8))

        def forward(self, x):
            return x * self.scale.view(1, -1, 1, 1).sigmoid()

    net = nn.Sequential(nn.Conv2d(3, 8, 3), Gate(), nn.Conv2d(8, 4, 1))
    x = torch.zeros(1, 3, 10, 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = pk.trace(net, x, overrides={Gate: lambda m, s: 5})
    said = [str(w.message) for w in caught]
    assert any("layers 1 (Gate) have a cost function but no layer type: they are counted, never cut" in m for m in said)
    assert "1" in graph.layers and pk.count(net, x, overrides={Gate: lambda m, s: 5}).layer("1").macs == 5
    assert not any(m.layer == "1" for g in graph.groups for m in g.members)


# -- keys as people write them ---------------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)


class Special(nn.Conv2d):
    pass


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.head = Special(8, 2, 1)

    def forward(self, x):
        return self.head(self.encoder.down(self.encoder.stem(x)))


def _macs(overrides):
    report = pk.count(Net(), torch.zeros(1, 1, 8, 8), overrides=overrides)
    return {r.name: r.macs for r in report.layers}


def test_keys_name_a_class_a_short_torch_name_an_import_path_a_module_or_a_glob():
    assert _macs({nn.Conv2d: lambda m, s: 1}) == {"encoder.stem": 1, "encoder.down": 1, "head": 1}
    assert _macs({"Conv2d": lambda m, s: 1}) == _macs({"torch.nn.Conv2d": lambda m, s: 1})
    assert _macs({"encoder.down": lambda m, s: 1})["encoder.down"] == 1
    assert _macs({"encoder.*": lambda m, s: 1}) == {"encoder.stem": 1, "encoder.down": 1, "head": 2 * 16 * 8}
    assert _macs({}) == {"encoder.stem": 8 * 64 * 9, "encoder.down": 8 * 16 * 72, "head": 2 * 16 * 8}


def test_precedence_is_name_then_longest_glob_then_nearest_class():
    fns = {
        nn.Conv2d: lambda m, s: 1,
        Special: lambda m, s: 2,
        "encoder.*": lambda m, s: 3,
        "encoder.d*": lambda m, s: 4,
        "encoder.stem": lambda m, s: 5,
    }
    assert _macs(fns) == {"encoder.stem": 5, "encoder.down": 4, "head": 2}


@pytest.mark.parametrize(
    "key, message",
    [
        ("encoder.dwon", r"'encoder\.dwon' is no module of the model \(did you mean 'encoder\.down'\?"),
        ("Conv3d", r"no module of the model is a Conv3d; did you mean 'Conv2d'\?"),
        ("Conv2", r"'Conv2' is no module name, glob or torch\.nn class of the model; did you mean 'Conv2d'\?"),
        ("decoder.*", r"glob 'decoder\.\*' matches no module; did you mean 'encoder'\?"),
        (nn.Conv3d, r"no module of the model is a Conv3d"),
    ],
)
def test_a_key_that_matches_nothing_names_the_closest(key, message):
    with pytest.raises(pk.ConfigError, match=message):
        _macs({key: lambda m, s: 1})


# -- predictions use the function ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_cost_model_predicts_with_the_functions_and_the_recount_agrees(seed):
    model, x = pk.get("model", "unet", width=4), torch.zeros(1, 1, 32, 48)
    fns = {"overrides": {"Conv2d": traffic}, "param_overrides": {"BatchNorm2d": lambda m, s: 3 * s.out_channels}}
    graph = pk.trace(model, x, **fns)
    generator = torch.Generator().manual_seed(seed)
    removal = {}
    for group in graph.groups:
        if len(group.prunable) > 1:
            chosen = torch.randperm(len(group.prunable), generator=generator)[: len(group.prunable) // 2]
            removal[group.id] = [group.prunable[int(i)] for i in chosen]
    predicted = CostModel(graph).predict(removal)
    remove(model, graph, removal)
    recount = pk.count(model, x, **fns)
    assert (predicted.macs, predicted.params) == (recount.macs, recount.params)
    assert recount.macs != pk.count(model, x).macs and recount.params != pk.count(model, x).params


def test_parameters_and_macs_are_priced_separately():
    net, x = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), torch.zeros(1, 1, 6, 6)
    plain = pk.count(net, x)
    priced = pk.count(net, x, param_overrides={"BatchNorm2d": lambda m, s: 100})
    assert priced.macs == plain.macs and priced.params == plain.params - 8 + 100
    assert priced.layer("1").custom == "params" and "custom params" in priced.table()
    macs_only = pk.count(net, x, overrides={"0": conv_macs})
    assert macs_only.layer("0").custom == "macs" and macs_only.params == plain.params


# -- a run prunes in your units --------------------------------------------------------------------------------------
COSTS = """
import math

def traffic(module, shape):
    macs = shape.output[0] * math.prod(shape.output[1:]) * shape.in_channels // shape.groups * math.prod(shape.kernel)
    return macs + 64 * (math.prod(shape.input) + math.prod(shape.output))
"""


def _one_shot(tiny_config, run_dir, **extra):
    return tiny_config(
        run_dir,
        seed=3,
        train={"epochs": 0},
        retrain="none",
        finetune={"epochs": 0},
        distillation={},
        pruning={
            **tiny_config(run_dir)["pruning"],
            "prune_away_percent": 40,
            "step": {"percent": 20},
            "criterion": {"weights": {"weight_norm": 1.0}},
        },
        **extra,
    )


def test_a_run_removes_the_requested_percent_of_your_cost(tmp_path, tiny_config):
    project = tmp_path / "project"
    project.mkdir()
    (project / "traffic_costs.py").write_text(COSTS)  # beside the config, found without PYTHONPATH
    (project / "priced.yaml").write_text(
        yaml.safe_dump(
            _one_shot(tiny_config, tmp_path / "priced", cost={"overrides": {"Conv2d": "traffic_costs:traffic"}})
        )
    )
    priced = Pruner.from_config(project / "priced.yaml", progress=False).prune()
    plain = Pruner.from_config(_one_shot(tiny_config, tmp_path / "plain"), progress=False).prune()
    assert len(priced.steps) >= 2
    for step in priced.steps:
        assert (step.predicted_macs, step.predicted_params) == (step.macs, step.params)
    recount = pk.count(priced.model, priced.example_input, overrides={"Conv2d": traffic})
    assert recount.macs == priced.summary["macs"] <= 0.6 * priced.summary["original_macs"]
    assert priced.summary["original_macs"] == pk.count(priced.teacher, priced.example_input, {"Conv2d": traffic}).macs
    assert priced.plan.keep != plain.plan.keep


@pytest.mark.parametrize(
    "body, message",
    [
        ("raise RuntimeError('boom')", "raised RuntimeError: boom"),
        ("return -1", "returned -1"),
        ("return float('nan')", "returned nan"),
        ("return 'abc'", "returned 'abc'"),
    ],
)
def test_a_hostile_function_stops_the_run_before_anything_is_written(tmp_path, tiny_config, body, message):
    module = f"hostile_{abs(hash(body))}"
    (tmp_path / f"{module}.py").write_text(f"def cost(module, shape):\n    {body}\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(_one_shot(tiny_config, tmp_path / "run", cost={"overrides": {"Conv2d": f"{module}:cost"}}))
    )
    with pytest.raises(pk.ConfigError, match=rf"cost\.overrides\['Conv2d'\] on layer 'inc\.conv1' {message}"):
        Pruner.from_config(config, progress=False).prepare()
    assert not (tmp_path / "run").exists()


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path, tiny_config, capsys):
    (tmp_path / "nan_cost.py").write_text("def cost(module, shape):\n    return float('nan')\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(_one_shot(tiny_config, tmp_path / "run", cost={"overrides": {"Conv2d": "nan_cost:cost"}}))
    )
    assert main(["run", str(config), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "prunekit: error: cost.overrides['Conv2d'] on layer 'inc.conv1' returned nan (shape 1→4 channels, "
        "output 1×4×32×48); it must return a finite number >= 0"
    ]
    assert not (tmp_path / "run").exists()


def test_a_budget_in_a_resource_your_functions_make_zero_is_refused(tmp_path, tiny_config):
    cfg = _one_shot(tiny_config, tmp_path / "run")
    with pytest.raises(pk.ConfigError, match="the model costs 0 macs as counted"):
        Pruner(cfg, progress=False, overrides={"Conv2d": lambda m, s: 0}).prepare()
    free_head = Pruner(cfg, progress=False, overrides={"outc": lambda m, s: 0}).prune()
    assert free_head.summary["macs_percent"] <= 60.0


def test_the_cost_command_uses_the_config_s_functions(tmp_path, tiny_config, capsys):
    (tmp_path / "flat_cost.py").write_text("def cost(module, shape):\n    return 10\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(_one_shot(tiny_config, tmp_path / "run", cost={"overrides": {"Conv2d": "flat_cost:cost"}}))
    )
    assert main(["cost", "--config", str(config), "--input", "1,1,32,48", "--json"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["macs"] == 10 * 19
