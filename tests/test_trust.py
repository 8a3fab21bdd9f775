"""What prunekit guarantees: non-finite training never reaches a file, it writes only where it may,
what it reads back is what it wrote, and bad input ends in a one-line error."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml

import prunekit as pk
from prunekit.cli import main
from prunekit.run.pruner import Pruner
from prunekit.run.storage import checkpoints
from prunekit.run.storage.atomic_files import write_manifest
from prunekit.run.storage.run_dir import MARKER
from prunekit.training.data import SplitData
from prunekit.training.settings import PhaseConfig
from prunekit.training.trainer import Objective, Trainer


class NaNImages(torch.utils.data.Dataset):
    """Generated eyes whose images are NaN where ``bad(index)`` says so."""

    def __init__(self, base, bad):
        self.base, self.bad = base, bad

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        item = dict(self.base[index])
        if self.bad(index):
            item["image"] = torch.full_like(item["image"], float("nan"))
        return item


def nan_data(bad, n=16):
    eyes = pk.get("dataset", "synthetic_eyes", size=[32, 48], n_train=n, n_val=8)
    return SplitData(pk.DataSplits(NaNImages(eyes.train, bad), eyes.val, 4, 1, task="segmentation"), batch_size=8)


def plain_trainer(data, max_bad=5):
    loss = pk.get("task_loss", "cross_entropy")
    objective = Objective({"cross_entropy": (loss, 1.0)})
    return Trainer(objective, data, pk.get("task", "segmentation"), torch.device("cpu"), progress=False), PhaseConfig(
        max_bad_batches=max_bad
    )


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# -- 1. non-finite training never reaches a file ------------------------------------------------------------------
def test_a_skipped_batch_leaves_weights_and_batchnorm_statistics_as_they_were():
    trainer, settings = plain_trainer(nan_data(lambda i: True), max_bad=100)
    model = pk.get("model", "unet", width=4)
    before = state(model)
    with pytest.warns(RuntimeWarning, match="non-finite loss"), pytest.raises(pk.TrainingError, match="no batch"):
        trainer.fit(model, "train", settings, 1, seed=0)  # every batch NaN: a failed epoch, never a loss of 0
    after = state(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "running statistics must not move"


def test_bad_batches_in_a_row_are_counted_across_epochs():
    calls = []

    def first_fine_then_nan(logits, batch):
        calls.append(len(calls))
        value = torch.nn.functional.cross_entropy(logits, batch["target"])
        return value if len(calls) == 1 else value * float("nan")

    trainer = Trainer(
        Objective({"flaky": (first_fine_then_nan, 1.0)}),
        nan_data(lambda i: False),
        pk.get("task", "segmentation"),
        torch.device("cpu"),
        progress=False,
    )
    model = pk.get("model", "unet", width=4)
    with pytest.warns(RuntimeWarning), pytest.raises(pk.TrainingError, match=r"train 2/3: .* 3 batches in a row"):
        trainer.fit(model, "train", PhaseConfig(max_bad_batches=3), 3, seed=0)  # 2 batches per epoch
    assert len(calls) == 4  # fine, bad | bad, bad: the streak crossed into epoch 2


NAN_GRADIENT = """
    import torch
    import prunekit as pk

    calls = {"n": 0}

    def build(at=5):  # call 1 is the preflight's check of the loss
        def loss(logits, batch):
            calls["n"] += 1
            value = torch.nn.functional.cross_entropy(logits, batch["target"])
            if calls["n"] == at:  # a finite loss whose gradient is NaN: the step ruins the weights
                return value + torch.sqrt(logits.sum() * 0)
            return value
        return loss

    @pk.hookimpl
    def prunekit_task_losses():
        return [pk.Spec("nan_gradient", build, "finite, with a NaN gradient at one call")]
"""


def write_plugin(tmp_path, monkeypatch, name, body):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_non_finite_weights_are_never_written_and_the_last_checkpoint_stays(tmp_path, monkeypatch, tiny_config):
    write_plugin(tmp_path, monkeypatch, "nan_gradient", NAN_GRADIENT)
    cfg = tiny_config(
        tmp_path / "run",
        loss={"nan_gradient": 1.0},
        distillation={},
        train={"epochs": 0},
        plugins={"load": ["nan_gradient"]},
        finetune={"epochs": 0},
    )
    with pytest.raises(pk.TrainingError, match=r"tensor '.*' is not finite .* last complete checkpoint is kept"):
        Pruner.from_config(cfg, progress=False).run()
    last = checkpoints.load_last(tmp_path / "run")  # step 1 (loss calls 2–3) was fine; step 2 ruined the weights
    assert last.step == 1 and all(torch.isfinite(t).all() for t in last.weights.values())
    assert not (tmp_path / "run" / "checkpoints" / "step_0002").exists()
    assert not any(p.name.startswith(".") for p in (tmp_path / "run" / "checkpoints").iterdir())


# -- 2. prunekit deletes or overwrites only what it wrote ---------------------------------------------------------
def test_a_folder_with_other_files_is_refused_before_anything_is_written(tmp_path, tiny_config):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(pk.ConfigError, match=r"holds files prunekit did not write \(thesis\.tex\)"):
        Pruner.from_config(tiny_config(folder), progress=False).run()
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_an_empty_folder_becomes_a_marked_run_and_an_empty_run_dir_is_a_config_error(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    cfg = tiny_config(tmp_path / "empty", retrain="none", finetune={"epochs": 0}, train={"epochs": 0})
    Pruner.from_config({**cfg, "pruning": {**cfg["pruning"], "max_steps": 1}}, progress=False).prune()
    assert json.loads((tmp_path / "empty" / MARKER).read_text())["format"] == "prunekit-run"
    with pytest.raises(pk.ConfigError, match="run_dir: an empty path names no folder"):
        pk.load_config(tiny_config(" "))


# -- 3. integrity -------------------------------------------------------------------------------------------------
def test_flipped_bytes_in_a_checkpoint_name_the_file(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", retrain="none", finetune={"epochs": 0}, train={"epochs": 0})
    cfg["pruning"]["max_steps"] = 1
    Pruner.from_config(cfg, progress=False).prune()
    weights = tmp_path / "run" / "checkpoints" / "step_0001" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x10  # one bit of one weight: still a valid file, a different model
    weights.write_bytes(bytes(data))
    with pytest.raises(pk.CheckpointError, match=r"step_0001/weights\.safetensors' has changed since it was written"):
        checkpoints.load_last(tmp_path / "run")
    baseline = tmp_path / "run" / "baseline.safetensors"
    baseline.write_bytes(baseline.read_bytes()[:-1] + b"\x00")
    with pytest.raises(pk.CheckpointError, match=r"baseline\.safetensors' has changed since the run wrote it"):
        Pruner.from_config(cfg, progress=False).prune(resume=True)


def test_a_loaded_tensor_that_is_not_finite_is_an_error(tmp_path, tiny_config):
    model = pk.get("model", "unet", width=4)
    with torch.no_grad():
        model.inc.conv1.weight[0, 0, 0, 0] = float("inf")
    torch.save(model.state_dict(), tmp_path / "inf.pt")
    cfg = tiny_config(
        tmp_path / "run", model={"name": "unet", "args": {"width": 4}, "checkpoint": str(tmp_path / "inf.pt")}
    )
    with pytest.raises(pk.CheckpointError, match=r"holds a tensor that is not finite: 'inc\.conv1\.weight'"):
        Pruner.from_config(cfg, progress=False).run()


def test_malformed_checkpoint_and_export_descriptions_are_checkpoint_errors(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "run", retrain="none", finetune={"epochs": 0}, train={"epochs": 0})
    Pruner.from_config({**cfg, "pruning": {**cfg["pruning"], "max_steps": 1}}, progress=False).run()
    step = tmp_path / "run" / "checkpoints" / "step_0001"
    (step / "state.json").write_text(json.dumps({"step": 1, "steps": [{"step": "one"}]}))
    write_manifest(step)  # the bytes are what was written; their meaning is wrong
    with pytest.raises(pk.CheckpointError, match="does not hold the step records of a run"):
        checkpoints.load_last(tmp_path / "run")
    export = tmp_path / "run" / "export"
    meta = json.loads((export / "model.json").read_text())
    (export / "model.json").write_text(json.dumps({**meta, "args": [4]}))
    write_manifest(export)
    with pytest.raises(pk.CheckpointError, match="'args' must be a mapping of builder arguments, not list"):
        pk.load(export)


# -- 4. every bad input is a one-line error -----------------------------------------------------------------------
def run_cli(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


VALID = {
    "model": {"name": "unet", "args": {"width": 4}},
    "data": {"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 8, "n_val": 4}},
    "train": {"epochs": 0},
    "retrain": "none",
    "finetune": {"epochs": 0},
}


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"pruning": {"prune_away_percent": float("nan")}},
            "pruning.prune_away_percent: nan is not allowed; expected a finite",
        ),
        (
            {"train": {"optimizer": {"lr": float("inf")}}},
            "train.optimizer.lr: inf is not allowed; expected a finite number",
        ),
        ({"pruning": {"criterion": {"weights": {"weight_norm": 0, "random": 0}}}}, "every weight is 0"),
        ({"model": {"name": "unet", "args": {"width": -1}}}, "model.args.width: -1 is out of range; it must be >= 1"),
        (
            {"model": {"factory": "torch.nn:Conv2d", "args": {"in_channels": 1, "out_channels": -1, "kernel_size": 3}}},
            "model.factory 'torch.nn:Conv2d' failed with arguments",
        ),
        ({"data": {"name": "synthetic_eyes", "args": {"n_train": 8, "size": [32]}}}, "synthetic_eyes"),
    ],
)
def test_bad_configs_are_one_line_errors_and_write_nothing(tmp_path, capsys, patch, message):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**VALID, "run_dir": str(tmp_path / "run"), **patch}))
    code, err = run_cli(["run", config], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [("", "is empty"), ("- just\n- a list", "a mapping of sections, not list")])
def test_empty_and_shapeless_configs_are_one_line_errors(tmp_path, capsys, text, message):
    (tmp_path / "cfg.yaml").write_text(text)
    code, err = run_cli(["run", tmp_path / "cfg.yaml"], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_binary_and_non_utf8_configs_are_one_line_errors(tmp_path, capsys):
    for name, data in (("binary.yaml", bytes(range(256))), ("latin1.yaml", "model: {name: ünet}".encode("latin-1"))):
        (tmp_path / name).write_bytes(data)
        code, err = run_cli(["run", tmp_path / name], capsys)
        assert code == 2 and len(err) == 1 and "is not UTF-8 text" in err[0], err


def test_a_file_in_the_way_of_the_run_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**VALID, "run_dir": str(tmp_path / "taken" / "run")}))
    code, err = run_cli(["run", config], capsys)
    assert code == 2 and len(err) == 1 and "cannot create the run directory" in err[0], err
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--model", "unet", "--input", ""], "--input: '' must be positive integers"),
        (["cost", "--model", "unet", "--input", "1,1,²,4"], "must be positive integers"),
        (["cost", "--model", "unet", "--arg", "width=["], "not valid YAML"),
        (["cost", "--model", "unet", "--arg", "=3"], "must look like key=value"),
        (["cost", "--model", "unet", "--arg", "width=-2"], "unet.width: -2 is out of range; it must be >= 1"),
        (["cost", "--model", "unet", "--input", "1,1,8,8"], "too small for a window"),
    ],
)
def test_bad_command_line_values_are_one_line_errors(capsys, args, message):
    code, err = run_cli(args, capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_counting_a_huge_input_never_allocates_it(capsys):
    code, _ = run_cli(["cost", "--model", "unet", "--input", "1,1,100000,100000", "--json"], capsys)
    assert code == 0  # 40 GB as float32: counted from shapes alone


BROKEN_PLUGINS = {
    "raises_on_import": "raise RuntimeError('no GPU here')",
    "syntax_error": "def prunekit_models(:\n    pass",
    "wrong_signature": "import prunekit as pk\n\n@pk.hookimpl\ndef prunekit_models(colour):\n    return []",
}


@pytest.mark.parametrize("name", list(BROKEN_PLUGINS))
def test_a_broken_plugin_in_plugins_load_is_skipped_with_a_warning_and_fatal_when_strict(tmp_path, monkeypatch, name):
    write_plugin(tmp_path, monkeypatch, name, BROKEN_PLUGINS[name])
    with pytest.warns(RuntimeWarning, match=f"plugin '{name}' .*; it is skipped"):
        manager = pk.Manager(load=(name,))
    assert "unet" in manager.names("model")
    monkeypatch.setenv("PRUNEKIT_STRICT_PLUGINS", "1")
    with pytest.raises(pk.PluginError) as info:
        pk.Manager(load=(name,))
    assert f"plugin '{name}'" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_an_exception_in_an_event_hook_names_the_plugin_and_keeps_the_checkpoint(tmp_path, monkeypatch, tiny_config):
    write_plugin(
        tmp_path,
        monkeypatch,
        "angry_listener",
        """
        import prunekit as pk

        @pk.hookimpl
        def prunekit_step_done(run, record):
            raise KeyError("dashboard offline")
    """,
    )
    cfg = tiny_config(
        tmp_path / "run",
        retrain="none",
        finetune={"epochs": 0},
        train={"epochs": 0},
        plugins={"load": ["angry_listener"]},
    )
    with pytest.raises(pk.PluginError, match=r"plugin 'angry_listener' failed in prunekit_step_done \(KeyError"):
        Pruner.from_config(cfg, progress=False).run()
    assert checkpoints.load_last(tmp_path / "run").step == 1


# -- 5. the API checks its inputs like the CLI ----------------------------------------------------------------------
def test_prune_takes_integer_indices_of_any_kind_and_refuses_the_rest():
    x = torch.zeros(1, 1, 32, 32)
    for request in ({"inc.conv1": [np.int64(0), torch.tensor(2), 5]}, {"inc.conv1": torch.tensor([0, 2, 5])}):
        model = pk.get("model", "unet", width=8)
        pk.prune(model, x, request)
        assert model.inc.conv1.out_channels == 5
    model = pk.get("model", "unet", width=8)
    before = state(model)
    for request, message in (
        ({"inc.conv1": [True]}, "is a bool, not an integer index"),
        ({"inc.conv1": [1.0]}, "is a float, not an integer index"),
        ({"inc.conv1": torch.tensor([1.0])}, "float32 tensor is not a tensor of indices"),
        ([("inc.conv1", [1])], "maps layer names to channel indices"),
    ):
        with pytest.raises(pk.PruneError, match=message):
            pk.prune(model, x, request)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_count_fails_where_a_real_forward_fails():
    model = pk.get("model", "unet", width=4)
    with pytest.raises(pk.PruneError, match=r"the input is torch\.int64, the weights torch\.float32"):
        pk.count(model, torch.zeros(1, 1, 64, 64, dtype=torch.long))
    with pytest.raises(pk.PruneError, match="too small for a window"):
        pk.count(model, torch.zeros(1, 1, 8, 8))
    with pytest.raises(pk.PruneError, match="not a floating-point tensor"):
        pk.count(torch.nn.Linear(3, 2), torch.zeros(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("value", [-1, -0.5, True, "9", None, float("nan"), float("inf")])
def test_a_cost_override_must_return_a_finite_number(value):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Softmax2d())
    with pytest.raises(pk.ConfigError, match=r"on layer '1' returned .*; it must return a finite number >= 0") as info:
        pk.count(net, torch.zeros(1, 3, 8, 8), overrides={torch.nn.Softmax2d: lambda m, s: value})
    assert repr(value) in str(info.value) and "Softmax2d" in str(info.value)


# -- a disk that fills up mid-run ------------------------------------------------------------------------------------
FILL_DISK = """
    import resource, signal
    import prunekit as pk

    @pk.hookimpl
    def prunekit_step_done(run, record):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # from now on, no file over 1 kB: a full disk
"""


@pytest.mark.slow
def test_a_full_disk_is_a_one_line_error_and_the_last_checkpoint_stays(tmp_path, tiny_config):
    (tmp_path / "fill_disk.py").write_text(textwrap.dedent(FILL_DISK))
    cfg = tiny_config(
        tmp_path / "run", retrain="none", finetune={"epochs": 0}, train={"epochs": 0}, plugins={"load": ["fill_disk"]}
    )
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(config)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("prunekit: error")]
    assert len(lines) == 1 and "cannot write" in lines[0] and "File too large" in lines[0], result.stderr[-1000:]
    assert checkpoints.load_last(tmp_path / "run").step == 1
