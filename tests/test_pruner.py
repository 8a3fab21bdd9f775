"""The pruning loop end to end: budgets, limits, checkpoints, resume, config errors."""

import dataclasses
import json

import pytest
import torch
import yaml

import prunekit as pk
from prunekit.run.config import PruningConfig
from prunekit.run.pruner import Pruner
from prunekit.run.storage import checkpoints


@pytest.fixture
def config(tiny_config):
    """Tiny one-shot configs: no training, no retraining, weight norms only."""

    def make(tmp_path, **overrides):
        base = {
            "seed": 3,
            "train": {"epochs": 0},
            "retrain": "none",
            "finetune": {"epochs": 0},
            "distillation": {},
            "pruning": {
                **tiny_config(tmp_path)["pruning"],
                "prune_away_percent": 74,
                "step": {"percent": 74},
                "criterion": {"weights": {"weight_norm": 1.0}},
                "layer_limit_percent": 95,
                "block_limit_percent": 95,
            },
        }
        return tiny_config(tmp_path / "run", **{**base, **overrides})

    return make


def test_one_shot_unet_to_74_percent_of_macs_removed(tmp_path, config):
    pruner = Pruner.from_config(config(tmp_path), progress=False)
    result = pruner.prune()
    assert len(result.steps) == 1
    assert result.summary["macs_percent"] <= 26.0
    recount = pk.count(result.model, result.example_input)
    assert recount.macs == result.steps[-1].macs
    last = checkpoints.load_last(tmp_path / "run")
    assert last.step == 1 and last.plan.keep == result.plan.keep


def test_ranking_per_latency_changes_the_plan_and_meets_the_budget(tmp_path, config):
    plans = {}
    for per_cost in ("none", "latency"):
        cfg = config(tmp_path / per_cost, pruning__criterion={"weights": {"weight_norm": 1.0}, "per_cost": per_cost})
        result = Pruner.from_config(cfg, progress=False).prune()
        assert result.summary["macs_percent"] <= 26.0
        plans[per_cost] = result.plan.keep
    assert plans["none"] != plans["latency"]


def test_ipad_criterion_with_calibration_and_limits(tmp_path, config):
    cfg = config(
        tmp_path,
        pruning__criterion={"weights": {"weight_norm": 0.5, "activation_deviation": 0.5}},
        pruning__step={"percent": 20},
        pruning__layer_limit_percent=60,
        pruning__block_limit_percent=50,
    )
    result = Pruner.from_config(cfg, progress=False).prune()
    assert len(result.steps) >= 2
    original = pk.count(pk.get("model", "unet", width=4), torch.zeros(1, 1, 32, 48))
    pruned = pk.count(result.model, torch.zeros(1, 1, 32, 48))
    for before in original.layers:
        if before.params:
            after = pruned.layer(before.name).params
            assert 100 * (before.params - after) / before.params <= 60 + 1e-6
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "step"] == [s.step for s in result.steps]
    assert all("miou" in r for r in log if r["event"] == "step")


def test_resume_reaches_the_same_result(tmp_path, config):
    cfg = config(
        tmp_path,
        pruning__criterion={"weights": {"weight_norm": 0.5, "activation_deviation": 0.5}},
        pruning__step={"percent": 25},
    )
    full = Pruner.from_config({**cfg, "run_dir": str(tmp_path / "full")}, progress=False).prune()
    assert len(full.steps) >= 2
    first = {**cfg, "run_dir": str(tmp_path / "parts"), "pruning": {**cfg["pruning"], "max_steps": 1}}
    Pruner.from_config(first, progress=False).prune()
    with pytest.raises(pk.ConfigError, match="differs from the one"):
        Pruner.from_config({**cfg, "run_dir": str(tmp_path / "parts")}, progress=False).prune(resume=True)
    (tmp_path / "parts" / "config.yaml").write_text(
        yaml.safe_dump(pk.load_config(cfg | {"run_dir": str(tmp_path / "parts")}).to_dict(), sort_keys=True)
    )
    resumed = Pruner.from_config({**cfg, "run_dir": str(tmp_path / "parts")}, progress=False).prune(resume=True)
    assert resumed.plan.keep == full.plan.keep
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_existing_run_is_not_overwritten(tmp_path, config):
    Pruner.from_config(config(tmp_path), progress=False).prune()
    before = (tmp_path / "run" / "checkpoints" / "last.json").read_text()
    with pytest.raises(
        pk.ConfigError, match=r"already holds a run; continue it with --resume \(from Python: run\(resume=True\)"
    ):
        Pruner.from_config(config(tmp_path), progress=False).prune()
    assert (tmp_path / "run" / "checkpoints" / "last.json").read_text() == before


def test_nothing_selectable_ends_with_a_message_and_the_result_so_far(tmp_path, config):
    cfg = config(tmp_path, pruning__layer_limit_percent=0)
    result = Pruner.from_config(cfg, progress=False).prune()
    assert result.steps == [] and result.summary["macs_percent"] == 100.0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "stop" and "nothing more can be removed" in r["message"] for r in log)


@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"pruning": {"prune_away_precent": 50}},
            "unknown key 'pruning.prune_away_precent'; did you mean 'prune_away_percent'?",
        ),
        (
            {"pruning": {"prune_away_percent": 0}},
            "pruning.prune_away_percent: 0.0 is out of range; it must be > 0 and <= 100",
        ),
        (
            {"pruning": {"step": {"percent": 10, "filters": 3}}},
            "pruning.step: give exactly one of macs, params, filters, percent",
        ),
        ({"data": {"batch_size": "eight"}}, "data.batch_size: 'eight' (str) is not allowed; expected int"),
        ({"retrain": {"epochs_per_stp": 2}}, "unknown key 'retrain.epochs_per_stp'; did you mean 'epochs_per_step'?"),
        (
            {"pruning": {"criterion": {"weights": {"taylor": -1}}}},
            "pruning.criterion.weights.taylor: -1.0 is out of range; it must be >= 0",
        ),
    ],
)
def test_config_errors_name_the_key_the_value_and_what_is_allowed(patch, message):
    with pytest.raises(pk.ConfigError) as info:
        pk.load_config(patch)
    assert str(info.value).startswith(message)


def test_cli_prune_rejects_a_misspelled_key_with_exit_2(tmp_path, capsys):
    from prunekit.cli import main

    path = tmp_path / "cfg.yaml"
    path.write_text("pruning:\n  prune_away_precent: 74\n")
    assert main(["prune", str(path)]) == 2
    valid = ", ".join(sorted(f.name for f in dataclasses.fields(PruningConfig)))
    assert capsys.readouterr().err.strip().splitlines() == [
        f"prunekit: error: unknown key 'pruning.prune_away_precent'; did you mean 'prune_away_percent'? valid: {valid}"
    ]


def test_checking_the_config_draws_nothing_from_the_run_s_random_numbers(tmp_path, config):
    state = Pruner.from_config(config(tmp_path), progress=False).prepare()
    state.log.close()
    torch.manual_seed(3)  # the run's seed
    fresh = pk.get("model", "unet", width=4, n_classes=4)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.teacher.state_dict().values()))
