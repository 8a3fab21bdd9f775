"""The command line: real subprocesses, exit codes and one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from prunekit.cli import main

PRUNEKIT = shutil.which("prunekit", path=os.path.dirname(sys.executable)) or "prunekit"


def run(*args):
    return subprocess.run([PRUNEKIT, *args], capture_output=True, text=True)


def test_cost_unknown_model_exits_2_with_a_suggestion():
    result = run("cost", "--model", "unett")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "prunekit: error: unknown model 'unett'; did you mean 'unet'? valid: densenet, regnet, resnet, unet"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["cost", "--model", "unet", "--input", "1,x,4"], "--input: '1,x,4' must be positive integers"),
        (["cost", "--model", "unet", "--arg", "width"], "--arg: 'width' must look like key=value"),
        (
            ["cost"],
            "which model? give --model NAME or --config FILE; registered models: densenet, regnet, resnet, unet",
        ),
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
