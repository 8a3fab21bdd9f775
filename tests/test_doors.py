"""The three doors into one engine — one call, your own loop, the whole run — the step they share,
and the guard on each."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit as pk
from prunekit.cli import main
from prunekit.run.storage import checkpoints

from .conftest import NO_GUARD


class Net(nn.Module):  # the README's model
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(16, 3)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def demo_unet():
    return pk.get("model", "unet", in_channels=1, n_classes=4, width=16, activation="leaky_relu")


# -- door 1: one call ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, size", [(Net, (1, 1, 16, 16)), (demo_unet, (1, 1, 64, 96))])
@pytest.mark.parametrize("percent", [30, 50])
def test_one_call_without_data_removes_the_share_asked_for(build, size, percent):
    model, x = build(), torch.zeros(size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = pk.prune_to(model, x, percent=percent)
    assert pruned.after.macs <= (1 - percent / 100) * pruned.before.macs
    assert pruned.after.macs > (1 - percent / 100 - 0.1) * pruned.before.macs  # not far past it
    assert pk.count(pruned.model, x).macs == pruned.after.macs
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is untouched
    assert pruned.notes == ["no data given: channels ranked by weight norm, which needs none"]
    assert "MACs" in str(pruned) and pruned.plan.removed > 0
    rebuilt = pk.apply_plan(build(), pruned.plan)
    assert pk.count(rebuilt, x).macs == pruned.after.macs


def test_one_call_with_data_ranks_by_the_default_criteria_and_in_steps():
    splits = pk.get("dataset", "synthetic_eyes", size=[32, 48], n_train=8, n_val=4)
    data = DataLoader(splits.train, batch_size=4)
    model, x = pk.get("model", "unet", width=4), torch.zeros(1, 1, 32, 48)
    with_data = pk.prune_to(model, x, percent=40, data=data, steps=2)
    without = pk.prune_to(model, x, percent=40, steps=2)
    assert with_data.notes == [] and with_data.steps == 2
    assert with_data.plan.keep != without.plan.keep  # Taylor and the weight norm chose other channels
    assert with_data.after.macs <= 0.6 * with_data.before.macs


def test_one_call_to_a_speedup_stops_on_the_measurement():
    model, x = demo_unet().eval(), torch.zeros(1, 1, 64, 96)
    macs = pk.count(model, x).macs

    def clock(models, x, repeats):  # a device whose time is the MACs: no timing noise in a test
        return [[pk.count(m, x).macs / macs] * repeats for m in models]

    pruned = pk.prune_to(model, x, target_speedup=2.0, limits=pk.Limits(90.0, 90.0), clock=clock)
    assert pruned.speedup.median == pytest.approx(macs / pruned.after.macs) and pruned.speedup.low >= 2.0
    assert "speed-up" in str(pruned) and "measured in eager" in str(pruned)


def test_a_target_speedup_is_reached_by_the_lower_end_of_the_measurement_not_its_median():
    """Rounds that scatter: a median at the target is not enough while the interval reaches below it."""
    model, x = demo_unet().eval(), torch.zeros(1, 1, 64, 96)
    macs = pk.count(model, x).macs
    scatter = [0.8, 0.9, 0.95, 1.0, 1.0, 1.0, 1.0, 1.05, 1.1, 1.2]  # the student's rounds, relative to its MACs

    def clock(models, x, repeats):
        teacher, student = (pk.count(m, x).macs / macs for m in models)
        return [[teacher] * repeats, [student * f for f in scatter[:repeats]]]

    pruned = pk.prune_to(model, x, target_speedup=1.5, limits=pk.Limits(90.0, 90.0), clock=clock)
    ratio = macs / pruned.after.macs
    assert pruned.speedup.low == pytest.approx(ratio / 1.1)  # the second-slowest of ten rounds
    assert pruned.speedup.median == pytest.approx(ratio) and ratio / 1.1 >= 1.5


@pytest.mark.parametrize("criteria", [{"weight_norm": 1.0}, {"weight_norm": 0.5, "activation_deviation": 0.5}])
def test_one_call_and_a_whole_run_prune_the_same_channels_from_the_same_settings_and_data(tmp_path, criteria):
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 1, 32, 48, generator=g), torch.randint(0, 4, (4, 32, 48), generator=g)) for _ in range(3)
    ]
    model = pk.get("model", "unet", width=16, n_classes=4)
    one_call = pk.prune_to(model, batches[0][0][:1], 60, data=batches, criteria=criteria, steps=2)
    config = {
        "run_dir": str(tmp_path / "run"), "task": "segmentation", "train": {"epochs": 0}, "retrain": "none",
        "finetune": {"epochs": 0}, "distillation": {},
        "pruning": {"prune_away_percent": 60, "step": {"percent": 30}, "max_steps": 2, "calibration_batches": 3,
                    "criterion": {"weights": criteria}, "compare_runtimes": [], **NO_GUARD},
    }  # fmt: skip
    run = pk.Pruner(config, model=model, train=batches, val=batches, progress=False).prune()
    assert one_call.plan.to_json() == run.plan.to_json() and one_call.steps == len(run.steps) == 2
    assert one_call.after.macs == run.summary["macs"]


# -- the step and its proposal ---------------------------------------------------------------------------------------
def test_a_proposal_is_shown_vetoed_and_edited_before_the_cut():
    model, x = pk.get("model", "unet", width=8), torch.zeros(1, 1, 32, 48)
    budget = pk.ResourceBudget(pk.count(model, x), "macs", 40, ("percent", 40))
    step = pk.PruningStep(model, x, budget, limits=pk.Limits(90.0, 90.0))
    proposal = step.propose()
    layer = next(iter(proposal.layers()))
    assert "MACs saved" in str(proposal)
    vetoed = proposal.without(layer)
    assert layer not in vetoed.layers() and vetoed.predicted.macs > proposal.predicted.macs
    assert sum(map(len, vetoed.removal.values())) < sum(map(len, proposal.removal.values()))
    one_group = next(iter(proposal.removal))
    edited = proposal.edited({one_group: proposal.removal[one_group][:1]})
    step.cut(edited)
    assert pk.count(model, x).macs == edited.predicted.macs
    assert sum(n for n, _ in edited.layers().values()) >= 1
    with pytest.raises(pk.PruneError, match="no layer 'down9'"):
        proposal.without("down9")


# -- door 2: your own loop -------------------------------------------------------------------------------------------
def loaders():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (48,), generator=g)
    images = torch.randn(48, 1, 16, 16, generator=g) + 3 * labels.view(-1, 1, 1, 1).float()  # learnable: the mean
    data = TensorDataset(images, labels)
    return DataLoader(data, batch_size=16, shuffle=True, generator=g), DataLoader(data, batch_size=48)


def own_config(tmp_path, **pruning):
    return {
        "run_dir": str(tmp_path / "run"),
        "task": "classification",
        "retrain": {"epochs_per_step": 2},
        "finetune": {"epochs": 0},
        "distillation": {"hinton": {"weight": 1.0, "args": {"T": 2.0}}},
        "pruning": {"prune_away_percent": 50, "step": {"percent": 25}, **NO_GUARD, **pruning},
    }


def train_your_way(step, train):
    optimizer = torch.optim.SGD(step.parameters(), lr=0.05)
    for _ in range(step.epochs):
        for images, labels in train:
            logits = step.model(images)
            loss = F.cross_entropy(logits, labels) + step.distillation(images, logits)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def test_your_own_loop_prunes_in_steps_checkpoints_and_exports(tmp_path):
    train, val = loaders()
    pruner = pk.Pruner(own_config(tmp_path), model=Net(), train=train, val=val, progress=False)
    seen = []
    for step in pruner.steps():
        assert step.distillation(*next((x, step.model(x)) for x, _ in train)).item() > 0  # the teacher differs
        train_your_way(step, train)
        seen.append((step.step, step.cost.macs, step.last))
        step.report(top1=0.5 + step.step / 10)
    assert [s for s, _, _ in seen] == [1, 2] and seen[-1][2] and not seen[0][2]
    assert [r.metrics["top1"] for r in pruner.result.steps] == [0.6, 0.7]
    assert pruner.result.summary["macs_percent"] <= 50 and "top-1" in str(pruner.result)
    reloaded = pk.load(tmp_path / "run", model=Net())
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(reloaded(x), pruner.result.model.eval()(x))


def seeded_net():
    """The same initial weights every time: a resumed run must be given the model it started with."""
    torch.manual_seed(0)
    return Net()


def test_your_own_loop_resumes_after_it_stopped(tmp_path):
    train, val = loaders()
    for step in pk.Pruner(own_config(tmp_path), model=seeded_net(), train=train, val=val, progress=False).steps():
        train_your_way(step, train)
        break  # killed during the first step's training: nothing of it was kept
    assert checkpoints.load_last(tmp_path / "run") is None
    first = pk.Pruner(own_config(tmp_path), model=seeded_net(), train=train, val=val, progress=False)
    steps = first.steps(resume=True)
    train_your_way(next(steps), train)
    next(steps)  # step 1 was checkpointed when the loop came back for step 2; stop in step 2
    steps.close()
    assert checkpoints.load_last(tmp_path / "run").step == 1
    again = pk.Pruner(own_config(tmp_path), model=seeded_net(), train=train, val=val, progress=False)
    assert [s.step for s in again.steps(resume=True)] == [2]
    assert [s.step for s in again.result.steps] == [1, 2]


def test_without_training_data_the_loop_ranks_by_weight_norm_and_validates_itself(tmp_path):
    _, val = loaders()
    pruner = pk.Pruner(own_config(tmp_path), model=Net(), val=val, progress=False)
    for step in pruner.steps():
        assert step.train is None and step.parameters()  # nothing to calibrate on; you bring the data
    assert all("top1" in s.metrics for s in pruner.result.steps)
    notes = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "note" and "weight norm" in r["message"] for r in notes)


TRAIN_FUNCTION = '''
import torch
import torch.nn.functional as F

def retrain(step):
    """Called once per step in place of prunekit's trainer."""
    optimizer = torch.optim.Adam(step.parameters(), lr=1e-3)
    for _ in range(step.epochs):
        for batch in step.train:
            logits = step.model(batch["image"])
            loss = F.cross_entropy(logits, batch["target"]) + step.distillation(batch["image"], logits)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {"miou": 0.25 * step.step}
'''

DATA_FACTORY = """
from torch.utils.data import DataLoader
import prunekit as pk

def build(n_train=8):
    splits = pk.get("dataset", "synthetic_eyes", size=[32, 48], n_train=n_train, n_val=4)
    return DataLoader(splits.train, batch_size=4), DataLoader(splits.val, batch_size=4)
"""


def test_yaml_names_your_retraining_and_your_data_by_import_path(tmp_path, tiny_config):
    (tmp_path / "door_train.py").write_text(TRAIN_FUNCTION)
    (tmp_path / "door_data.py").write_text(DATA_FACTORY)
    cfg = tiny_config(tmp_path / "run", task="segmentation", finetune={"epochs": 0})
    cfg["retrain"] = {"epochs_per_step": 1, "function": "door_train:retrain"}
    cfg["data"] = {"factory": "door_data:build", "args": {"n_train": 8}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    result = pk.Pruner.from_config(tmp_path / "cfg.yaml", progress=False).run()
    assert [s.metrics["miou"] for s in result.steps] == [0.25, 0.5]
    assert result.summary["macs_percent"] <= 50
    with pytest.raises(pk.ConfigError, match="data: give either name or factory, not both"):
        pk.load_config({**cfg, "data": {"name": "synthetic_eyes", "factory": "door_data:build"}})


# -- the guard -------------------------------------------------------------------------------------------------------
def test_a_step_that_empties_a_class_is_rolled_back_and_retried_smaller(tmp_path):
    """Your loop reports per-class accuracy; a step that removes more than 45 % of the MACs at once
    empties class 2 — it is rolled back and tried again with half the step."""
    train, val = loaders()
    config = own_config(tmp_path, prune_away_percent=60, step={"percent": 60}, class_floor=0.05, retries=3)
    config["train"] = {"epochs": 8, "optimizer": {"lr": 0.02}}  # a baseline that knows every class
    torch.manual_seed(0)
    pruner = pk.Pruner(config, model=Net(), train=train, val=val, progress=False)
    current, tried = pk.count(Net(), torch.zeros(1, 1, 16, 16)).macs, []
    for step in pruner.steps():
        share = 1 - step.cost.macs / current
        tried.append(share)
        step.report(top1=0.9, acc_0=0.9, acc_1=0.9, acc_2=0.9 if share <= 0.45 else 0.0)
        current = step.cost.macs if share <= 0.45 else current
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert min(pruner.result.summary["baseline_metrics"][f"acc_{k}"] for k in range(3)) >= 0.05
    rollbacks = [r for r in log if r["event"] == "rollback"]
    assert rollbacks and all(
        "class 2 (acc_2 1.000 → 0.000) fell below class_floor 0.05" in r["reason"] for r in rollbacks
    )
    assert rollbacks[0]["step"] == 1 and "features.0 (10 of 16)" in rollbacks[0]["layers"]
    assert tried[0] >= 0.55 and tried[1] < tried[0] / 1.5  # the retry took about half
    assert all(s.metrics["acc_2"] > 0 for s in pruner.result.steps)
    assert pruner.result.summary["macs_percent"] <= 40


@pytest.mark.slow
def test_a_cut_that_destroys_a_class_for_real_is_rolled_back_and_every_class_stays(tmp_path, tiny_config):
    cfg = tiny_config(
        tmp_path / "run",
        model={"name": "unet", "args": {"width": 8, "n_classes": 4}},
        data={"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 64, "n_val": 16}, "batch_size": 8},
        train={"epochs": 6, "optimizer": {"lr": 0.01}},
        retrain="none",
        finetune={"epochs": 0},
        distillation={},
    )
    cfg["pruning"].update(prune_away_percent=80, step={"percent": 80}, class_floor=0.05, retries=3)
    result = pk.Pruner(cfg, progress=False).run()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rollbacks = [r for r in log if r["event"] == "rollback"]
    assert rollbacks and rollbacks[0]["step"] == 1 and "fell below class_floor" in rollbacks[0]["reason"]
    assert result.steps and result.steps[0].macs_percent > 50  # the step that held was a fraction of 80 %
    baseline, final = result.summary["baseline_metrics"], result.summary["metrics"]
    kept = [k for k in baseline if k.startswith("iou_") and baseline[k] >= 0.05]
    assert kept and all(final[k] >= 0.05 for k in kept)


def test_the_guard_stops_after_its_retries_with_the_last_good_model(tmp_path):
    train, val = loaders()
    config = own_config(tmp_path, max_drop=5.0, retries=1)
    config["train"] = {"epochs": 8, "optimizer": {"lr": 0.02}}  # a baseline with a metric to lose
    torch.manual_seed(0)
    pruner = pk.Pruner(config, model=Net(), train=train, val=val, progress=False)
    for step in pruner.steps():
        step.report(top1=0.0)  # every cut destroys the model
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log if r["event"] in ("rollback", "stop")] == ["rollback", "rollback", "stop"]
    stop = next(r for r in log if r["event"] == "stop")
    assert "broke the guard 2 times in a row" in stop["message"] and "it wanted to cut features.0" in stop["message"]
    assert pruner.result.steps == [] and pruner.result.summary["macs_percent"] == 100.0
    assert (tmp_path / "run" / "export" / "weights.safetensors").is_file()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Steps rolled back by the guard" in report and report.count("top1 fell from") == 2


# -- export from anywhere --------------------------------------------------------------------------------------------
def test_onnx_export_of_a_model_object_and_of_a_run_made_from_one(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pruned = pk.prune_to(Net(), torch.zeros(1, 1, 16, 16), percent=50)
    error = pk.export_onnx(pruned.model, tmp_path / "net.onnx", torch.randn(1, 1, 16, 16))
    assert error < 1e-4 and (tmp_path / "net.onnx").stat().st_size > 0
    with pytest.raises(pk.ConfigError, match="give example_input="):
        pk.export_onnx(pruned.model, tmp_path / "other.onnx")
    train, val = loaders()
    config = own_config(tmp_path, max_steps=1)
    pk.Pruner({**config, "retrain": "none"}, model=Net(), train=train, val=val, progress=False).run()
    assert pk.export_onnx(tmp_path / "run", tmp_path / "run.onnx", model=Net()) < 1e-4
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "pk.export_onnx(" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_the_loop_takes_any_retraining_and_asks_it_for_batches_losses_training_and_verdicts(tmp_path, tiny_config):
    """The three doors differ only in the retraining the loop holds; a fourth needs no change to it."""
    import contextlib
    import functools

    from prunekit.run.loop import pruning_steps

    class Counting:
        def __init__(self):
            self.asked = []

        def calibration_batches(self, step):
            self.asked.append(("batches", step))
            return [{"image": torch.randn(2, 1, 32, 48), "target": torch.randint(0, 4, (2, 32, 48))}]

        def loss(self, logits, batch):
            self.asked.append(("loss", None))
            return F.cross_entropy(logits, batch["target"])

        @contextlib.contextmanager
        def training(self, step):
            self.asked.append(("training", step.step))
            yield

        def retrain(self, step):
            self.asked.append(("retrain", step.step))
            step.report(0.5)

        def evaluate(self, model):
            raise AssertionError("a step that reported its metric is not validated again")

    taylor = {"weights": {"taylor": 1.0}}
    pruning = {"prune_away_percent": 50, "step": {"percent": 25}, "criterion": taylor, "compare_runtimes": []}
    config = tiny_config(tmp_path / "run", train__epochs=0, pruning={**pruning, **NO_GUARD})
    pruner = pk.Pruner(config, progress=False)
    state = pruner.prepare()
    retraining = Counting()
    try:
        for step in pruning_steps(state, functools.partial(pruner._count, state), retraining, progress=False):
            retraining.retrain(step)
    finally:
        state.log.close()
    steps = [s.step for s in state.steps]
    assert len(steps) >= 2 and [a for a in retraining.asked if a[0] == "retrain"] == [("retrain", s) for s in steps]
    assert {("batches", s) for s in steps} <= set(retraining.asked) and ("loss", None) in retraining.asked
    assert all(s.metrics[state.task.best_metric] == 0.5 for s in state.steps)
