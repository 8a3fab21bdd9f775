"""Every loss term is logged per epoch with the training metric, and ``balance: auto`` scales the
distillation terms to the task loss times their weights."""

import json

import pytest
import torch

import prunekit as pk
from prunekit.modes import eval_mode
from prunekit.run.components import build_trainer
from prunekit.run.config import load_config
from prunekit.run.pruner import Pruner
from prunekit.training.distiller import Teacher
from prunekit.training.trainer import BALANCE_BATCHES


def _config(tiny_config, run_dir, **extra):
    return tiny_config(
        run_dir,
        train={"epochs": 0},
        finetune={"epochs": 0},
        pruning={**tiny_config(run_dir)["pruning"], "prune_away_percent": 25, "step": {"percent": 25}},
        distillation={"balance": "auto", "hinton": {"weight": 0.5}, "attention": {"weight": 2.0}},
        **extra,
    )


def test_balance_auto_makes_each_term_its_weight_times_the_task_loss(tmp_path, tiny_config):
    config = load_config(_config(tiny_config, tmp_path / "run"))
    assert config.distillation_balance == "auto" and set(config.distillation) == {"hinton", "attention"}
    trainer = build_trainer(config, config.manager(), torch.device("cpu"), progress=False)
    teacher = pk.get("model", "unet", width=4, n_classes=4).eval()
    student = pk.get("model", "unet", width=4, n_classes=4)  # other weights: the terms are far from 0
    distiller = trainer.distiller(student, Teacher(teacher, ("down2", "up2")), seed=5)
    try:
        batches = list(trainer.data.train_batches(5))[:BALANCE_BATCHES]
        task, terms = 0.0, {"hinton": 0.0, "attention": 0.0}
        with torch.no_grad(), eval_mode(student):
            for batch in batches:
                student_out, teacher_out = distiller.outputs(batch["image"], student(batch["image"]))
                task += float(trainer.objective.task_loss(student_out.logits, batch)) / len(batches)
                for name, value in distiller.terms(student_out, teacher_out).items():
                    terms[name] += float(value) / len(batches)
    finally:
        distiller.remove()
    assert terms["hinton"] == pytest.approx(0.5 * task, rel=1e-4)
    assert terms["attention"] == pytest.approx(2.0 * task, rel=1e-4)
    assert distiller.scales["hinton"] != 0.5 and distiller.scales["attention"] != 2.0


def test_each_term_the_training_metric_and_the_scales_are_logged(tmp_path, tiny_config, capsys):
    # an untrained teacher answers near-uniform, so Hinton's term between it and its cut copy is ~0
    with pytest.warns(RuntimeWarning, match=r"distillation balance: hinton is .* too small to scale by; it keeps"):
        result = Pruner(_config(tiny_config, tmp_path / "run"), progress=True).prune()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    (epoch,) = [r for r in records if r.get("phase") == "retrain"]
    terms = ("loss_cross_entropy", "distill_hinton", "distill_attention")
    assert all(k in epoch for k in (*terms, "train_miou", "miou", "scale_hinton", "scale_attention"))
    assert epoch["loss"] == pytest.approx(sum(epoch[k] for k in terms), rel=1e-5)
    assert 0 <= epoch["train_miou"] <= 1 and result.steps[0].metrics["miou"] == epoch["miou"]
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("retrain step 1 epoch 1"))
    assert "cross_entropy " in line and "hinton " in line and "train mIoU" in line and "val mIoU" in line
    assert "distillation balanced: hinton ×0.5, attention ×" in line and epoch["scale_attention"] != 2.0
