"""The example configs in configs/ are valid and run, shrunk to test size."""

from pathlib import Path

import pytest
import yaml

import prunekit as pk
from prunekit.run.pruner import Pruner

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
SMALL = {"unet": {"width": 4}, "densenet": {"channel_size": 4}}


def test_there_are_example_configs():
    assert {p.name for p in CONFIGS} >= {"unet_eyes.yaml", "ritnet_eyes.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_validates_and_builds_its_plugins(path):
    cfg = pk.load_config(path)
    pk.get("model", cfg.model.name, **cfg.model.args)
    for name, term in cfg.loss.items():
        pk.get("task_loss", name, **term.args)
    for name, term in cfg.distillation.items():
        pk.get("distillation", name, **term.args)
    for name in cfg.pruning.criterion.weights:
        pk.get("criterion", name, **cfg.pruning.criterion.args.get(name, {}))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_runs_one_step_at_test_size(path, tmp_path):
    cfg = yaml.safe_load(path.read_text())
    cfg["run_dir"] = str(tmp_path / "run")
    cfg["model"]["args"].update(SMALL[cfg["model"]["name"]])
    cfg["data"]["args"].update(size=[32, 32], n_train=8, n_val=4)
    cfg["train"]["epochs"], cfg["finetune"]["epochs"] = 1, 0
    cfg["retrain"]["epochs_per_step"] = 1
    cfg["pruning"].update(max_steps=1, step={"percent": 10}, calibration_batches=1)
    result = Pruner.from_config(cfg, progress=False).prune()
    assert len(result.steps) == 1
    assert any(
        len(roles["out"]) < result.plan.sizes[layer]["out"]
        for layer, roles in result.plan.keep.items()
        if "out" in roles
    )
