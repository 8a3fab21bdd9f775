"""Tasks and data of any kind: classification beside segmentation, class folders, generated
shapes, and your own model, DataLoaders and loss through the Python API."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit as pk
from prunekit.graph.traversal import traversal_of
from prunekit.plugins.tasks.classification import Accuracy
from prunekit.run.pruner import Pruner
from prunekit.testing import check_dataset

from .conftest import NO_GUARD


def test_accuracy_by_hand():
    metric = Accuracy(3)
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    metric.update(logits, {"target": torch.tensor([0, 2, 2, 1])})  # right, 2nd guess, right, 3rd guess
    result = metric.compute()
    assert result["top1"] == 0.5 and "top5" not in result  # with 3 classes every guess is in the top 5
    many = Accuracy(7)
    many.update(torch.eye(7)[[0, 1, 2, 3, 4, 5, 6, 0]] + torch.arange(7) * 0.01, {"target": torch.arange(8) % 7})
    assert many.compute()["top5"] == 1.0 and many.compute()["top1"] == 1.0
    assert (result["acc_0"], result["acc_1"], result["acc_2"]) == (1.0, 0.0, 0.5)
    assert result["mean_class_accuracy"] == pytest.approx(0.5)


def test_synthetic_shapes_are_deterministic_and_balanced():
    data = pk.get("dataset", "synthetic_shapes", size=[24, 40], n_train=200, n_val=8, n_classes=5, channels=3)
    check_dataset(data)
    assert data.task == "classification" and data.class_names == ("disc", "square", "triangle", "ring", "cross")
    assert data.train[3]["image"].shape == (3, 24, 40)
    again = pk.get("dataset", "synthetic_shapes", size=[24, 40], n_train=200, n_val=8, n_classes=5, channels=3)
    assert torch.equal(data.train[7]["image"], again.train[7]["image"])
    counts = np.bincount([int(data.train[i]["label"]) for i in range(200)], minlength=5)
    assert counts.min() >= 25  # about 40 each


def test_image_folder_reads_class_folders(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for label, name in enumerate(("cat", "dog")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((12, 10), 40 * label + i, np.uint8)).save(folder / f"{i}.png")
    data = pk.get("dataset", "image_folder", root=str(tmp_path), size=[8, 8])
    check_dataset(data)
    assert (data.task, data.n_classes, data.class_names) == ("classification", 2, ("cat", "dog"))
    assert [int(data.train[i]["label"]) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert data.val[0]["image"].shape == (1, 8, 8)
    with pytest.raises(pk.ConfigError, match=r"n_classes is 3, but .* has 2 class folders"):
        pk.get("dataset", "image_folder", root=str(tmp_path), n_classes=3)


class OwnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def loaders():
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(32, 1, 12, 12, generator=g), torch.randint(0, 3, (32,), generator=g)
    return DataLoader(TensorDataset(images, labels), batch_size=8), DataLoader(
        TensorDataset(images, labels), batch_size=16
    )


def own_config(tmp_path, **extra):
    return {
        "run_dir": str(tmp_path / "run"),
        "task": "classification",
        "train": {"epochs": 1},
        "retrain": {"epochs_per_step": 1},
        "finetune": {"epochs": 0},
        "pruning": {"prune_away_percent": 40, "step": {"percent": 20}, "layer_limit_percent": 90, **NO_GUARD},
        **extra,
    }


def test_own_model_loaders_and_loss_run_export_and_reload(tmp_path):
    model, (train, val) = OwnNet(), loaders()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Pruner(
        own_config(tmp_path),
        progress=False,
        model=model,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        example_input=torch.zeros(1, 1, 12, 12),
    ).run()
    assert result.summary["macs_percent"] <= 60 and "top1" in result.summary["metrics"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the object is left alone
    description = json.loads((tmp_path / "run" / "export" / "model.json").read_text())
    assert description["object"].endswith(":OwnNet")
    with pytest.raises(pk.CheckpointError, match=r"exported from a model object .*pk\.load\(path, model=\.\.\.\)"):
        pk.load(tmp_path / "run")
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(pk.load(tmp_path / "run", model=OwnNet())(x), result.model.eval()(x))


@pytest.mark.parametrize(
    "pruning, ranked_by", [({}, {"taylor": 1.0}), ({"criterion": {"weights": {"weight_norm": 1}}}, {"weight_norm": 1})]
)
def test_a_classification_run_ranks_by_taylor_unless_its_config_names_criteria(tmp_path, pruning, ranked_by):
    config = own_config(tmp_path, train={"epochs": 0})
    config["pruning"] = {**config["pruning"], "max_steps": 1, **pruning}
    train, val = loaders()
    Pruner(config, progress=False, model=OwnNet(), train=train, val=val).prune()
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["pruning"]["criterion"]["weights"] == ranked_by


def test_resume_with_other_objects_is_refused_and_loaders_need_a_task(tmp_path):
    train, val = loaders()
    config = own_config(
        tmp_path, pruning={"prune_away_percent": 40, "step": {"percent": 20}, "max_steps": 1, **NO_GUARD}
    )
    Pruner(config, progress=False, model=OwnNet(), train=train, val=val).prune()
    other = nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(pk.ConfigError, match="was started with other objects"):
        Pruner(config, progress=False, model=other, train=train, val=val).prune(resume=True)
    with pytest.raises(pk.ConfigError, match="data given as objects does not say its task"):
        Pruner(
            {**config, "task": None, "run_dir": str(tmp_path / "b")}, progress=False, model=OwnNet(), train=train
        ).run()


def test_segmentation_loaders_may_yield_dicts_with_a_mask(tmp_path):
    g = torch.Generator().manual_seed(1)
    items = [
        {"image": torch.randn(1, 16, 16, generator=g), "mask": torch.randint(0, 2, (16, 16), generator=g)}
        for _ in range(8)
    ]
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2, 1))
    config = own_config(tmp_path, task="segmentation")
    result = Pruner(
        config, progress=False, model=net, train=DataLoader(items, batch_size=4), val=DataLoader(items, batch_size=4)
    ).run()
    assert "miou" in result.summary["metrics"]


def test_a_model_no_traversal_knows_gets_blocks_and_taps_from_its_children():
    traversal = traversal_of(OwnNet(), pk.manager(), example_input=torch.zeros(1, 1, 12, 12))
    assert traversal.name == "default" and traversal.blocks == ("body", "head")
    assert traversal.taps == ("body",)  # its feature map; the classifier's output is not one


def test_the_calibration_loss_weighs_every_present_class_alike():
    from prunekit.plugins.tasks.calibration_loss import class_balanced_cross_entropy

    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[0, :2, :2] = 1  # a class on 4 of 64 pixels
    logits = torch.zeros(1, 3, 8, 8)
    logits[:, 0] = 5.0  # every pixel called class 0: only the small class is wrong
    batch = {"target": mask}
    plain = nn.functional.cross_entropy(logits, mask)
    balanced = class_balanced_cross_entropy(logits, batch)
    per_class = nn.functional.cross_entropy(logits, mask, reduction="none")
    assert balanced == pytest.approx(((per_class[mask == 0].mean() + per_class[mask == 1].mean()) / 2).item())
    assert balanced > 5 * plain  # the small class's error is not drowned by the large one
    labels = torch.tensor([0, 0, 0, 2])
    assert class_balanced_cross_entropy(torch.randn(4, 3), {"target": labels}).shape == ()


@pytest.mark.parametrize("choice", ["task", "training"])
def test_gradient_criteria_differentiate_the_task_s_calibration_loss_unless_told(tmp_path, tiny_config, choice):
    from prunekit.run.retraining import retraining_for

    config = tiny_config(tmp_path / "run", train__epochs=0, pruning__calibration_loss=choice)
    state = Pruner(config, progress=False).prepare()
    state.log.close()
    retraining = retraining_for(state.config, state.trainer, state.distil_from, None)
    expected = state.task.calibration_loss if choice == "task" else state.trainer.objective.task_loss
    other = state.trainer.objective.task_loss if choice == "task" else state.task.calibration_loss
    batch = next(iter(retraining.calibration_batches(1)))
    logits = state.model(batch["image"])
    chosen = retraining.loss(logits, batch)
    assert torch.isfinite(chosen) and chosen == expected(logits, batch) != other(logits, batch)
