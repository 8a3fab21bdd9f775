"""A plugin cannot break a model silently: layer types are checked, mistakes are reported before
any work, and local plugins load from where the config is."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cli import main


class ConvLike(nn.Module):
    """A convolution in disguise: prunekit's layer types do not know this class."""

    def __init__(self, cin, cout):
        super().__init__()
        self.inner_weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.1)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.inner_weight, padding=1)


class CutsOutputsOnly(pk.LayerType):
    """Written the way a norm's layer type is, for a layer that is really a producer."""

    name, module, kind = "conv_like", ConvLike, "conv"

    def flow(self, module):
        return pk.Flow.CHANNELWISE

    def macs(self, module, shape):
        return pk.numel(shape.output) * shape.in_channels * 9

    def prune_out(self, module, keep):
        pk.cut_parameter(module, "inner_weight", keep, 0)


class NoFlow(pk.LayerType):
    name, module, kind = "no_flow", ConvLike, "conv"


def plugin_with(*layer_types):
    class Plugin:
        @pk.hookimpl
        def prunekit_layer_types(self):
            return list(layer_types)

    return Plugin()


def model_with_conv_like(channels=8):
    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), ConvLike(channels, channels), nn.Conv2d(channels, 2, 1))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_layer_type_without_flow_is_not_registered(plugin_manager):
    plugin_manager.register(plugin_with(NoFlow()), "noflow")
    with pytest.warns(
        RuntimeWarning, match=r"plugin 'noflow' returned layer type 'no_flow', which does not declare flow\(\)"
    ):
        assert "no_flow" not in plugin_manager.names("layer_type")


def test_the_tracer_pins_a_channel_wise_layer_that_changes_the_channel_count(plugin_manager):
    plugin_manager.register(plugin_with(CutsOutputsOnly()), "liar")
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), ConvLike(8, 4), nn.Conv2d(4, 2, 1))
    with pytest.warns(
        RuntimeWarning, match="'conv_like' declares (ConvLike channel-wise, but layer 1 turns 8|the wrong flow)"
    ):
        graph = pk.trace(model, torch.zeros(1, 1, 6, 6), plugins=plugin_manager)
    group = next(g for g in graph.groups if "0" in g.producers)
    assert not group.prunable


def test_a_wrong_flow_is_caught_after_the_cut_and_the_model_is_restored(plugin_manager):
    plugin_manager.register(plugin_with(CutsOutputsOnly()), "liar")
    model = model_with_conv_like(8)  # 8 → 8: the channel count alone does not give the lie away
    before = state(model)
    with pytest.raises(
        pk.PruneError, match=r"after the cut the model no longer runs at layer '1' \(ConvLike\).*conv_like"
    ):
        pk.prune(model, torch.zeros(1, 1, 6, 6), {"0": [1, 4]}, plugins=plugin_manager)
    after = state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model[0].out_channels == 8 and model[0].weight.shape[0] == 8  # attributes restored too


def test_check_layer_type_catches_the_same_mistakes():
    from prunekit.testing import ContractError, check_layer_type

    with pytest.raises(ContractError, match=r"does not declare flow\(\)"):
        check_layer_type(NoFlow(), ConvLike(4, 4), torch.randn(1, 4, 5, 5))
    with pytest.raises(ContractError, match="after prune_out the module fails on its cut input"):
        check_layer_type(CutsOutputsOnly(), ConvLike(4, 4), torch.randn(1, 4, 5, 5))


def test_two_layer_types_for_one_module_class_clash(plugin_manager):
    class AnotherConv(pk.LayerType):
        name, module, kind = "my_conv2d", nn.Conv2d, "conv"

        def flow(self, module):
            return pk.Flow.PRODUCER

    plugin_manager.register(plugin_with(AnotherConv()), "mine")
    with pytest.raises(
        pk.PluginError,
        match=r"layer type 'torch.nn.modules.conv.Conv2d' is registered by both "
        r"'prunekit.layers' and 'mine'",
    ):
        pk.count(nn.Conv2d(1, 2, 3), torch.zeros(1, 1, 4, 4), plugins=plugin_manager)
    assert pk.count(nn.Linear(2, 3), torch.zeros(1, 2), plugins=plugin_manager).macs == 6  # the rest works


def test_a_misspelled_or_unmarked_hook_is_a_warning_naming_it_and_an_error_when_strict(plugin_manager, monkeypatch):
    class Typo:
        @pk.hookimpl
        def prunekit_modles(self):
            return []

    class Unmarked:
        def prunekit_models(self):
            return []

    with pytest.warns(
        RuntimeWarning,
        match=r"plugin 'typo' has a hook 'prunekit_modles', which is no prunekit hook; "
        r"did you mean 'prunekit_models'\?",
    ):
        plugin_manager.register(Typo(), "typo")
    with pytest.warns(RuntimeWarning, match="defines prunekit_models without @prunekit.hookimpl"):
        plugin_manager.register(Unmarked(), "unmarked")
    monkeypatch.setenv("PRUNEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(pk.PluginError, match="prunekit_modles"):
        pk.Manager().register(Typo(), "typo")


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name


TYPO_PLUGIN = """
    import prunekit as pk
    from torch import nn

    @pk.hookimpl
    def prunekit_model(self):  # meant: prunekit_models
        return [pk.Spec("tiny", lambda: nn.Conv2d(1, 2, 1))]
"""


def run_config(tmp_path, text):
    return main(["run", str(write(tmp_path / "project", "cfg.yaml", text)), "--quiet"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: {name: tiny}\nplugins: {load: [./typo_plugin.py]}", "has a hook 'prunekit_model'"),
        ("model: {name: unet}\ndata: {name: synthetic_eye}", "data: unknown dataset 'synthetic_eye'"),
        (
            "model: {name: unet}\ndata: {name: synthetic_eyes}\nloss: {cross_entrpy: 1}",
            "loss.cross_entrpy: unknown task loss",
        ),
        ("model: {name: unet}\ndata: {name: synthetic_eyes}\ndistillation: {hintn: 1}", "unknown distillation 'hintn'"),
        (
            "model: {name: unet}\ndata: {name: synthetic_eyes}\nlogging: [csv, tensorbord]",
            "unknown logger 'tensorbord'",
        ),
        ("model: {name: unet}\ndata: {name: synthetic_eyes}\ntask: segmentaton", "unknown task 'segmentaton'"),
        (
            "model: {name: unet}\ndata: {name: synthetic_eyes}\npruning: {criterion: {weights: {tayler: 1}}}",
            "unknown criterion 'tayler'",
        ),
        ("model: {name: unet, args: {widht: 4}}\ndata: {name: synthetic_eyes}", "unknown key 'model.args.widht'"),
        (
            "model: {name: unet}\ndata: {name: synthetic_eyes}\nplugins: {disable: [prunekit.densnet]}",
            "plugins.disable: no plugin named 'prunekit.densnet'; did you mean 'prunekit.densenet'?",
        ),
        (
            "model: {name: unet}\ndata: {name: synthetic_eyes}\ncost: {overrides: {torch.nn.Conv2d: 'math:nope'}}",
            "cannot import 'math:nope'",
        ),
    ],
)
def test_mistakes_fail_before_anything_is_trained_or_written(tmp_path, capsys, monkeypatch, text, message):
    write(tmp_path / "project", "typo_plugin.py", TYPO_PLUGIN)
    monkeypatch.setenv("PRUNEKIT_STRICT_PLUGINS", "1")
    code = run_config(tmp_path, f"run_dir: {tmp_path / 'run'}\n{text}\n")
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists() and "epoch" not in out  # nothing trained, nothing written


def test_not_found_and_failed_to_import_are_different_messages_with_a_traceback_under_verbose(tmp_path, capsys):
    write(tmp_path, "fails.py", "import numpy\nraise ValueError('no licence key')\n")
    config = write(tmp_path, "cfg.yaml", "model: {name: unet}\nplugins: {load: [fails, ./missing.py]}\n")
    with pytest.warns(RuntimeWarning) as caught:
        code = main(["cost", "--config", str(config), "--input", "1,1,32,32", "--verbose"])
    assert code == 2 and "plugins.load: the plugin file 'missing.py' does not exist" in capsys.readouterr().err
    warning = str(caught[0].message)
    assert "plugin 'fails' was found but failed to import (ValueError: no licence key)" in warning
    assert 'File "' in warning and "fails.py" in warning  # the plugin's own traceback, under --verbose


LOCAL_MODEL = """
    import prunekit as pk
    from torch import nn

    def build(width=3):
        return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 1))

    @pk.hookimpl
    def prunekit_models():
        return [pk.Spec("local_net", build, "a model that lives beside its config")]
"""


@pytest.mark.slow
def test_a_plugin_file_beside_the_config_runs_and_its_export_reloads_in_a_fresh_process(tmp_path):
    project = tmp_path / "project"
    write(project, "local_model.py", LOCAL_MODEL)
    write(
        project,
        "cfg.yaml",
        f"""
        run_dir: {tmp_path / "run"}
        model: {{name: local_net, args: {{width: 6}}}}
        data: {{name: synthetic_eyes, args: {{size: [32, 48], n_train: 8, n_val: 4, n_classes: 2}}}}
        plugins: {{load: [./local_model.py]}}
        train: {{epochs: 0}}
        retrain: none
        finetune: {{epochs: 0}}
        pruning: {{prune_away_percent: 30, step: {{percent: 30}}, max_drop: null, class_floor: null}}
        logging: [{{csv: {{filename: steps.csv}}}}]
    """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(project / "cfg.yaml")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "steps.csv").read_text().startswith("event,step,macs")
    run_dir = str(tmp_path / "run")
    load = (
        "import torch, prunekit as pk; m = pk.load({run_dir!r}{trust}); "
        "print(tuple(m(torch.zeros(1, 1, 32, 48)).shape))"
    )
    refused = subprocess.run(
        [sys.executable, "-c", load.format(run_dir=run_dir, trust="")], cwd=elsewhere, capture_output=True, text=True
    )
    assert refused.returncode == 1 and "plugin" in refused.stderr and "local_model.py" in refused.stderr
    loaded = subprocess.run(
        [sys.executable, "-c", load.format(run_dir=run_dir, trust=", trust_code=True")],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "(1, 2, 32, 48)"


def test_plugin_flags_and_environment_load_and_disable(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "flag_model.py", LOCAL_MODEL)
    assert main(["cost", "--model", "local_net", "--plugin", str(path), "--input", "1,1,8,8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == 3 * 64 * 9 + 2 * 64 * 3
    assert main(["cost", "--model", "densenet", "--no-plugin", "prunekit.densenet", "--input", "1,1,8,8"]) == 2
    assert "unknown model 'densenet'" in capsys.readouterr().err
    monkeypatch.setenv("PRUNEKIT_PLUGINS", str(path))
    assert "local_net" in pk.Manager().names("model")
    monkeypatch.setenv("PRUNEKIT_DISABLE_PLUGINS", "prunekit.unet")
    assert "unet" not in pk.Manager().names("model")
    assert os.environ.get("PRUNEKIT_VERBOSE") is None  # flags do not leak out of a command


def test_arguments_a_plugin_declares_are_checked_with_key_paths():
    with pytest.raises(pk.ConfigError, match=r"distillation\.hinton\.args\.T: 0\.0 is out of range; it must be > 0"):
        pk.load_config({"distillation": {"hinton": {"weight": 1, "args": {"T": 0}}}})
    with pytest.raises(
        pk.ConfigError,
        match=r"unknown key 'pruning\.criterion\.weights\.weight_norm\.args\.pp'; "
        r"did you mean 'p'\?",
    ):
        pk.load_config({"pruning": {"criterion": {"weights": {"weight_norm": 1}, "args": {"weight_norm": {"pp": 2}}}}})
