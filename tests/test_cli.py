"""The command line: real subprocesses, exit codes and one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prunekit.cli import main

PRUNEKIT = shutil.which("prunekit", path=os.path.dirname(sys.executable)) or "prunekit"


def test_cost_unknown_model_exits_2_with_a_suggestion(capsys):
    assert main(["cost", "--model", "unett"]) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith("prunekit: error: unknown model 'unett'; did you mean 'unet'?") and "densenet" in line
    assert out == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--model", "unet", "--input", "1,x,4"], "--input: '1,x,4' must be positive integers"),
        (["cost", "--model", "unet", "--arg", "width"], "--arg: 'width' must look like key=value"),
        (["cost"], "which model? give --model NAME (or pkg.module:function) or --config FILE; registered models:"),
        (["cost", "--depth", "two"], "argument --depth: invalid int value: 'two'"),
        (["cost", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = main(args)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cost_json_and_depth(capsys):
    assert main(["cost", "--model", "unet", "--arg", "width=8", "--input", "1,1,64,64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [1, 1, 64, 64]
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"])
    assert {b["name"] for b in report["blocks"]} >= {"inc", "down1.conv", "up4.conv", "outc"}
    assert main(["cost", "--model", "densenet", "--input", "1,1,32,32", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "down_block1 " in out and "down_block1.conv1" not in out


def test_cost_from_a_config(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {name: densenet, args: {channel_size: 8}}\ninput_size: [1, 1, 32, 32]\ncost: {include: [norm]}\n"
    )
    assert main(["cost", "--config", str(cfg), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [1, 1, 32, 32] and "norm" in report["include"]
    assert any(layer["kind"] == "norm" and layer["macs"] > 0 for layer in report["layers"])


def test_version_and_a_bare_command_say_what_prunekit_is(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("prunekit ")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: prunekit" in out and "COMMAND" in out and "measured-latency budget" in out


@pytest.mark.parametrize("command", ["run", "prune", "demo", "cost", "config", "export", "report", "plugins"])
def test_every_command_has_a_description_and_examples(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  prunekit " + command in out and "--quiet" in out and "--device" in out
    assert len(out.split("\n\n")[1]) > 40  # the description paragraph


def tiny_yaml(tmp_path, **extra):
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": {"name": "unet", "args": {"width": 4}},
        "data": {"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 8, "n_val": 4}, "batch_size": 4},
        "train": {"epochs": 1},
        "retrain": {"epochs_per_step": 1},
        "pruning": {"prune_away_percent": 50, "step": {"percent": 50}, "max_drop": None, "class_floor": None},
        **extra,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_a_run_into_a_log_file_prints_its_plan_and_lines_never_bar_frames(tmp_path):
    config = tiny_yaml(tmp_path)
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        done = subprocess.run(
            [PRUNEKIT, "run", str(config), "--set", "pruning.prune_away_percent=30"], stdout=out, stderr=err
        )
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert done.returncode == 0, stderr[-2000:]
    lines = stdout.splitlines()
    assert (
        lines[:5] and lines[0].startswith("model:   unet") and any(line.startswith("run dir: ") for line in lines[:6])
    )
    assert "budget:  remove 30 % of the MACs, 50 % of the original macs per step, about 1 steps" in stdout
    assert any(line.startswith("train epoch 1:") for line in lines) and "run directory:" in stdout
    assert "\r" not in stdout + stderr and "it/s" not in stdout + stderr  # no progress-bar frames
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["macs_percent"] <= 70


def test_quiet_prints_the_result_only_and_set_changes_the_config(tmp_path, capsys):
    config = tiny_yaml(tmp_path, train={"epochs": 0}, retrain="none")
    assert main(["run", str(config), "--quiet", "--set", "pruning.step.percent=25", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "model:" not in out and "epoch" not in out and "baseline" in out and "run directory:" in out
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len([s for s in steps if s["event"] == "step"]) == 2  # 50 % in steps of 25 %


def test_cost_takes_the_config_s_data_size_and_a_builder_by_import_path(tmp_path, capsys, monkeypatch):
    config = tiny_yaml(tmp_path)
    assert main(["cost", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == [1, 1, 32, 48]
    (tmp_path / "my_builders.py").write_text("import torch\ndef net():\n    return torch.nn.Conv2d(1, 3, 3)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["cost", "--model", "my_builders:net", "--input", "1,1,10,10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"] == 3 * 64 * 9


def test_the_config_reference_in_docs_is_the_one_the_schema_gives():
    from prunekit.run.reporting.reference import reference

    written = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    assert written == reference(), "regenerate it: prunekit config --reference > docs/config.md"
    assert "`pruning.max_drop`" in written and "### dataset `synthetic_eyes`" in written
