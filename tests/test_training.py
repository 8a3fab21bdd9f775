"""The trainer: learning happens, bad losses are handled, schedules, distillation on both models."""

import textwrap

import pytest
import torch

import prunekit as pk
from prunekit.run.components import build_objective
from prunekit.run.pruner import Pruner
from prunekit.training.data import SplitData
from prunekit.training.settings import LossScheduleConfig
from prunekit.training.trainer import Objective, Trainer, TrainingError


def data(n_train=48, size=(32, 48)):
    splits = pk.get("dataset", "synthetic_eyes", size=size, n_train=n_train, n_val=16)
    return SplitData(splits, batch_size=8)


def trainer(cfg_dict, run_data=None, on_epoch=None):
    """A trainer for a config's losses and data, without a teacher."""
    cfg = pk.load_config(cfg_dict)
    task = pk.get("task", "segmentation")
    objective = build_objective(cfg, task, pk.manager())
    return Trainer(objective, run_data or data(), task, torch.device("cpu"), on_epoch=on_epoch, progress=False), cfg


def test_a_tiny_training_run_learns(tmp_path, tiny_config):
    torch.manual_seed(0)
    run_data = data(n_train=64)
    model = pk.get("model", "unet", width=8, activation="leaky_relu")
    losses = []
    train, cfg = trainer(
        tiny_config(tmp_path, train={"epochs": 6, "optimizer": {"lr": 0.003}}, distillation={}),
        run_data=run_data,
        on_epoch=lambda trainer, record: losses.append(record["loss"]),
    )
    chance = train.evaluate(model)["miou"]
    metrics = train.fit(model, "train", cfg.train, 6, seed=0)
    assert losses[-1] < 0.7 * losses[0]
    # predicting background everywhere scores about 0.2: more means the eye's classes are found
    assert metrics["miou"] > max(0.35, chance + 0.2)


def test_non_finite_losses_are_skipped_then_abort(tmp_path, tiny_config):
    class NaNAfter:
        @pk.hookimpl
        def prunekit_task_losses(self):
            return [pk.Spec("nan_loss", lambda: lambda logits, batch: logits.sum() * float("nan"), "always NaN")]

    with pk.registered(NaNAfter()):
        train, cfg = trainer(
            tiny_config(tmp_path, loss={"nan_loss": 1.0}, distillation={}, train={"epochs": 1, "max_bad_batches": 3})
        )
        model = pk.get("model", "unet", width=4)
        before = {k: v.clone() for k, v in model.named_parameters()}
        with (
            pytest.warns(RuntimeWarning, match="non-finite loss"),
            pytest.raises(TrainingError, match="3 batches in a row"),
        ):
            train.fit(model, "train", cfg.train, 1, seed=0)
        assert all(torch.equal(before[k], v) for k, v in model.named_parameters())  # no step was taken


def test_nan_during_a_run_keeps_the_last_checkpoint(tmp_path, monkeypatch, tiny_config):
    (tmp_path / "nan_plugin.py").write_text(
        textwrap.dedent("""
        import torch
        import prunekit as pk

        calls = {"n": 0}

        def build():
            def loss(logits, batch):
                calls["n"] += 1
                value = torch.nn.functional.cross_entropy(logits, batch["target"])
                return value * float("nan") if calls["n"] > 8 else value  # fine for the first step only
            return loss

        @pk.hookimpl
        def prunekit_task_losses():
            return [pk.Spec("sometimes_nan", build, "NaN after a few batches")]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(
        tmp_path / "run",
        loss={"sometimes_nan": 1.0},
        distillation={},
        train={"epochs": 0},
        retrain={"epochs_per_step": 3, "max_bad_batches": 2},
        plugins={"load": ["nan_plugin"]},
    )
    with pytest.warns(RuntimeWarning, match="non-finite"), pytest.raises(TrainingError):
        Pruner.from_config(cfg, progress=False).run()
    from prunekit.run.storage import checkpoints

    last = checkpoints.load_last(tmp_path / "run")
    assert last is not None and last.step == 1


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("sgd", "plateau"), ("adam", "none")])
def test_optimizers_and_schedules(tmp_path, optimizer, schedule, tiny_config):
    lrs = []
    phase = {
        "epochs": 2,
        "optimizer": {"name": optimizer, "lr": 0.01},
        "schedule": {"name": schedule},
        "grad_clip": 1.0,
    }
    train, cfg = trainer(
        tiny_config(tmp_path, distillation={}, train=phase), on_epoch=lambda trainer, record: lrs.append(record["lr"])
    )
    train.fit(pk.get("model", "unet", width=4), "train", cfg.train, 2, seed=0)
    assert len(lrs) == 2 and (lrs[1] < lrs[0] if schedule == "cosine" else lrs[1] <= lrs[0])


def test_ritnet_schedule_moves_weight_from_dice_to_surface():
    ritnet = LossScheduleConfig(epochs=10, ramp={"generalized_dice": [1.0, 0.0], "surface": [0.0, 1.0]})
    assert [ritnet.factor("generalized_dice", e) for e in (0, 5, 20)] == [1.0, 0.5, 0.0]
    assert [ritnet.factor("surface", e) for e in (0, 5, 20)] == [0.0, 0.5, 1.0]
    assert ritnet.factor("cross_entropy", 3) == 1.0
    with pytest.raises(pk.ConfigError, match=r"loss_schedule\.ramp\.surface: .* must be two finite factors"):
        pk.load_config({"loss_schedule": {"ramp": {"surface": [0, 1, 2]}}})


def test_schedule_weights_the_task_losses_of_each_epoch():
    calls = []
    first = lambda logits, batch: calls.append("first") or logits.sum() * 0 + 1.0
    second = lambda logits, batch: calls.append("second") or logits.sum() * 0 + 10.0
    schedule = LossScheduleConfig(epochs=2, ramp={"first": [1.0, 0.0]})
    objective = Objective({"first": (first, 2.0), "second": (second, 1.0)}, schedule)
    logits = torch.zeros(1, 2, 2, 2)
    assert objective.task_loss(logits, {}, epoch=0).item() == 12.0
    assert objective.task_loss(logits, {}, epoch=1).item() == 11.0
    assert objective.task_loss(logits, {}, epoch=2).item() == 10.0 and calls[-1] == "second"  # weight 0: not called


@pytest.mark.parametrize(
    "model, args, size", [("unet", {"width": 4}, [32, 48]), ("densenet", {"channel_size": 4}, [32, 32])]
)
def test_prune_and_retrain_with_hinton_attention_and_fsp(tmp_path, model, args, size, tiny_config):
    cfg = tiny_config(
        tmp_path / "run",
        model={"name": model, "args": {**args, "n_classes": 4}},
        data={"name": "synthetic_eyes", "args": {"size": size, "n_train": 16, "n_val": 8}, "batch_size": 8},
        train={"epochs": 0},
        finetune={"epochs": 0},
        pruning__max_steps=1,
        loss={"cross_entropy": 1.0, "generalized_dice": 1.0, "surface": 0.5},
        distillation={"hinton": {"weight": 1.0}, "attention": {"weight": 1.0}, "fsp": {"weight": 1.0}},
    )
    result = Pruner.from_config(cfg, progress=False).run()
    assert len(result.steps) == 1 and result.steps[0].removed > 0
    assert result.summary["teacher_hash_before"] == result.summary["teacher_hash_after"]
