"""The examples in examples/ run, at test size: a classification run, a model built by import
path, and the Python API with your own module and DataLoaders; each export reloads in a fresh
process with identical outputs."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import prunekit as pk
from prunekit.run.pruner import Pruner

from .conftest import NO_GUARD

EXAMPLES = Path(__file__).parents[1] / "examples"


def shrunk(path, run_dir, **data_args):
    """The example config at test size; plugins.search stays the example's own folder."""
    cfg = yaml.safe_load(path.read_text())
    cfg["run_dir"] = str(run_dir)
    cfg["data"]["args"].update(data_args)
    cfg["train"]["epochs"], cfg.setdefault("finetune", {})["epochs"] = 1, 1
    cfg.setdefault("plugins", {})["search"] = [str(path.parent)]
    cfg["pruning"].update(NO_GUARD)  # a baseline of one epoch: its metric swings too much to guard
    return cfg


def reload_in_a_fresh_process(run_dir, x, tmp_path):
    torch.save(x, tmp_path / "x.pt")
    script = (  # as many threads as here: the same order of summation, the same bits
        f"import torch, prunekit as pk; torch.set_num_threads({torch.get_num_threads()}); "
        f"model = pk.load({str(run_dir)!r}, trust_code=True); "
        f"torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(tmp_path / "y.pt")


@pytest.mark.parametrize(
    "example, data_args, size",
    [
        pytest.param("classification.yaml", {"n_train": 64, "n_val": 32}, (2, 1, 32, 32), marks=pytest.mark.slow),
        ("factory/factory.yaml", {"n_train": 16, "n_val": 8, "size": [32, 48]}, (2, 1, 32, 48)),
        pytest.param(
            "own_training/own_training.yaml",
            {"n_train": 16, "n_val": 8, "size": [32, 48]},
            (2, 1, 32, 48),
            marks=pytest.mark.slow,  # its retraining function and data factory are tested in test_doors too
        ),
    ],
)
def test_an_example_config_runs_exports_and_reloads_elsewhere(tmp_path, example, data_args, size):
    cfg = shrunk(EXAMPLES / example, tmp_path / "run", **data_args)
    result = Pruner.from_config(cfg, progress=False).run()
    assert result.summary["macs_percent"] <= 50.0
    x = torch.randn(size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = result.model.eval()(x)
    assert torch.equal(reload_in_a_fresh_process(tmp_path / "run", x, tmp_path), expected)


@pytest.mark.slow  # the classification task itself is tested in test_tasks
def test_the_classification_example_is_scored_by_its_task(tmp_path):
    cfg = shrunk(EXAMPLES / "classification.yaml", tmp_path / "run", n_train=32, n_val=16)
    cfg["pruning"]["max_steps"] = 1
    result = Pruner.from_config(cfg, progress=False).run()
    assert result.task.name == "classification"
    assert {"top1", "acc_0"} <= set(result.summary["metrics"]) and "top5" not in result.summary["metrics"]
    assert "top-1" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py"), "--tiny", "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported and reloaded: identical outputs" in done.stdout


def test_the_factory_config_names_no_plugin_model():
    cfg = pk.load_config(EXAMPLES / "factory" / "factory.yaml")
    assert cfg.model.name is None and cfg.model.factory == "my_nets:build"
    assert cfg.plugins.search == [str((EXAMPLES / "factory").resolve())]


@pytest.mark.slow
def test_your_own_loop_example_resumes_after_a_kill_and_exports(tmp_path):
    run_dir = tmp_path / "own"
    command = [sys.executable, str(EXAMPLES / "own_loop.py"), "--tiny", "--run-dir", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run_dir / "checkpoints" / "last.json"
    while not last.exists() and process.poll() is None:
        time.sleep(0.05)
    process.kill()  # in the middle of the second step's training
    process.wait()
    assert last.exists() and not (run_dir / "export").exists()
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported and reloaded: identical outputs" in done.stdout
    assert "step 1:" not in done.stdout and "step 3:" in done.stdout  # it went on from the checkpoint
