"""Trust, third round: the doors, the step and its proposal, your loop, your functions and your
files under hostile use — each class of fault one line (a ``PrunekitError``; exit 2 from the CLI)
before the run claims its folder wherever that can be known, nothing silently wrong, nothing lost."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

import prunekit as pk

from .conftest import NO_GUARD

QUIET = {"compare_runtimes": [], **NO_GUARD}


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )  # fmt: skip


class Stream(IterableDataset):
    """Samples as a stream: a DataLoader over it has a ``__len__`` that raises."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(16):
            yield torch.randn(1, 16, 16, generator=g), torch.randint(0, 3, (), generator=g)


class Unsized:
    """An iterable with ``__iter__`` alone (no ``__len__``, no truth value of its own)."""

    def __iter__(self):
        return iter(DataLoader(Stream(), batch_size=4))


def classification(run_dir, **pruning):
    return {
        "run_dir": str(run_dir), "task": "classification", "retrain": {"epochs_per_step": 1},
        "finetune": {"epochs": 1}, "pruning": {"prune_away_percent": 30, "step": {"percent": 30}, **QUIET, **pruning},
    }  # fmt: skip


# -- 1. iterables without a length ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [lambda: DataLoader(Stream(), batch_size=4), Unsized], ids=["iterable-dataset", "plain"]
)
def test_data_without_a_length_runs_through_every_door(tmp_path, make):
    result = pk.Pruner(classification(tmp_path / "run"), model=net(), train=make(), val=make(), progress=False).run()
    assert result.summary["macs_percent"] <= 70 and "top1" in result.summary["metrics"]
    pruned = pk.prune_to(net(), torch.zeros(1, 1, 16, 16), 30, data=make())
    assert pruned.after.macs <= 0.7 * pruned.before.macs


def test_a_data_factory_may_return_loaders_without_a_length(tmp_path):
    (tmp_path / "streams.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch.utils.data import DataLoader, IterableDataset

            class Stream(IterableDataset):
                def __iter__(self):
                    g = torch.Generator().manual_seed(0)
                    for _ in range(16):
                        yield torch.randn(1, 32, 48, generator=g), torch.randint(0, 4, (32, 48), generator=g)

            def build():
                return DataLoader(Stream(), batch_size=4), DataLoader(Stream(), batch_size=4)
            """
        )
    )
    config = {
        "run_dir": str(tmp_path / "run"), "task": "segmentation", "model": {"name": "unet", "args": {"width": 4}},
        "data": {"factory": "streams:build"}, "train": {"epochs": 0}, "retrain": "none", "finetune": {"epochs": 0},
        "pruning": {"prune_away_percent": 30, "step": {"percent": 30}, **QUIET},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(repr(config).replace("'", '"').replace("None", "null"))
    done = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(tmp_path / "cfg.yaml"), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]


# -- 2. files written through links ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, module_tiny_config):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    config = module_tiny_config(run_dir, train={"epochs": 0}, retrain="none", finetune={"epochs": 0}, distillation={})
    config["pruning"] = {**config["pruning"], "compare_runtimes": []}
    pk.Pruner(config, progress=False).run()
    return run_dir


@pytest.mark.parametrize("name", ["report.md", "steps.png", "channels.png", "blocks.png"])
def test_a_report_never_writes_through_a_link_planted_in_the_run(finished, tmp_path, name):
    import shutil

    from prunekit.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir, symlinks=True)
    victim = tmp_path / "yours.txt"
    victim.write_text("your file")
    (run_dir / name).unlink(missing_ok=True)
    (run_dir / name).symlink_to(victim)
    assert main(["report", str(run_dir)]) == 0
    assert victim.read_text() == "your file" and not (run_dir / name).is_symlink()


# -- 3. reported metrics --------------------------------------------------------------------------------------------
def a_step():
    from prunekit.run.pruned_step import PrunedStep

    return PrunedStep(1, net(), net(), None, None, False, 1, torch.device("cpu"))


@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=5), st.none(),
        st.booleans(), st.lists(st.floats(), max_size=2),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), st.one_of(st.floats(), st.text(max_size=3),
                        st.booleans(), st.none()), max_size=3),
    )
)  # fmt: skip
def test_a_report_keeps_numbers_by_name_and_refuses_anything_else_in_one_line(value):
    step = a_step()
    numbers = isinstance(value, (int, float)) and not isinstance(value, bool)
    by_name = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
    )
    if value is None or numbers or by_name:
        step.report(value)
        assert step.metrics == (
            {"metric": float(value)} if numbers else {k: float(v) for k, v in (value or {}).items()}
        )
    else:
        with pytest.raises(pk.ConfigError, match=r"^step\.report: "):
            step.report(value)


def own_loop(tmp_path, report, **pruning):
    config = classification(tmp_path / "run", **pruning)
    pruner = pk.Pruner(config, model=net(), train=list(DataLoader(Stream(), batch_size=4)),
                       val=list(DataLoader(Stream(), batch_size=4)), progress=False)  # fmt: skip
    for step in pruner.steps():
        report(step)
    return pruner.result


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_metric_that_is_no_finite_number_rolls_the_step_back(tmp_path, bad):
    result = own_loop(tmp_path, lambda step: step.report(bad), max_drop=5.0, retries=1)
    assert result.steps == [] and result.summary["macs_percent"] == 100.0
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert f"top1 is {bad}" in log and '"event": "rollback"' in log


def test_a_report_without_the_tasks_metric_is_one_line_naming_it(tmp_path):
    with pytest.raises(pk.ConfigError, match="reported accuracy, but not 'top1', the metric of task 'classification'"):
        own_loop(tmp_path, lambda step: step.report(accuracy=0.9), max_drop=5.0)


def test_class_floor_measures_the_classes_a_loop_that_reports_one_number_does_not(tmp_path):
    """The loop says its metric held while it made class 2 unreachable; validation finds the class
    emptied, and the step goes back."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 3
    images = labels.view(-1, 1, 1, 1).float() + 0.1 * torch.randn(48, 1, 16, 16, generator=g)  # learnable
    batches = [(images[i : i + 16], labels[i : i + 16]) for i in (0, 16, 32)]
    config = {**classification(tmp_path / "run", class_floor=0.5, retries=0), "train": {"epochs": 8}}

    def lose_class_two(step):
        with torch.no_grad():
            step.model[-1].bias[2] = -1e4
        step.report(0.99)

    pruner = pk.Pruner(config, model=net(), train=batches, val=batches, progress=False)
    for step in pruner.steps():
        lose_class_two(step)
    assert pruner.result.summary["baseline_metrics"]["acc_2"] >= 0.5
    assert pruner.result.steps == [] and "acc_2" in (tmp_path / "run" / "log.jsonl").read_text().split("rollback")[1]


# -- 4. the model's structure changed in your loop ------------------------------------------------------------------
def replace_a_layer(step):
    step.model[0] = nn.Conv2d(1, step.model[0].out_channels, 5, padding=2)  # a wider kernel: not what the plan cut


def cut_it_again(step):
    pk.prune(step.model, torch.zeros(1, 1, 16, 16), {"0": [0]})


@pytest.mark.parametrize("change", [replace_a_layer, cut_it_again], ids=["replaced", "pruned"])
@pytest.mark.parametrize("reports", [True, False], ids=["reports", "silent"])
def test_a_loop_that_changes_the_models_structure_is_stopped_before_an_export(tmp_path, change, reports):
    def loop(step):
        change(step)
        if reports:
            step.report(0.5)

    with pytest.raises(pk.PruneError, match=r"^step 1: your loop changed the model's structure \("):
        own_loop(tmp_path, loop)
    assert not (tmp_path / "run" / "export").exists()


# -- 5. what can fail late is checked before the run claims its folder ----------------------------------------------
def with_module(tmp_path, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))


@pytest.mark.parametrize(
    "function, message",
    [
        ("mine:absent", "retrain.function"),
        ("nowhere:train", "retrain.function"),
        ("mine:two_arguments", "cannot be called with the step alone"),
        ("mine:no_arguments", "cannot be called with the step alone"),
    ],
)
def test_a_retrain_function_that_cannot_run_fails_before_the_folder_is_claimed(tmp_path, function, message):
    with_module(tmp_path, "mine", "def two_arguments(step, epochs):\n    pass\ndef no_arguments():\n    pass\n")
    config = {**classification(tmp_path / "run"), "retrain": {"function": function}}
    try:
        with pytest.raises(pk.ConfigError, match=message):
            pk.Pruner(config, model=net(), train=batches(), val=batches(), progress=False).run()
    finally:
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "run").exists()


def batches():
    return list(DataLoader(Stream(), batch_size=4))


def fails_below_twelve(module, shape):
    if shape.out_channels < 12:
        raise ValueError("a kernel needs 12 channels")
    return shape.out_channels


def test_a_cost_function_failing_only_at_small_counts_fails_before_the_folder_is_claimed(tmp_path):
    pruner = pk.Pruner(classification(tmp_path / "run"), model=net(), train=batches(), val=batches(),
                       overrides={"Conv2d": fails_below_twelve}, progress=False)  # fmt: skip
    with pytest.raises(pk.ConfigError, match=r"cost.overrides\['Conv2d'\] on layer '\d' raised ValueError"):
        pruner.run()
    assert not (tmp_path / "run").exists()


def test_a_run_that_failed_before_its_first_step_resumes_with_a_corrected_config(tmp_path):
    with_module(tmp_path, "typo", "def broken(step):\n    raise RuntimeError('a typo in my loop')\n")
    config = {**classification(tmp_path / "run"), "retrain": {"function": "typo:broken"}}
    try:
        with pytest.raises(RuntimeError, match="a typo"):
            pk.Pruner(config, model=net(), train=batches(), val=batches(), progress=False).run()
    finally:
        sys.path.remove(str(tmp_path))
    baseline = (tmp_path / "run" / "baseline.safetensors").read_bytes()
    corrected = classification(tmp_path / "run")
    with pytest.raises(pk.ConfigError, match=r"continue it with --resume \(from Python: run\(resume=True\)"):
        pk.Pruner(corrected, model=net(), train=batches(), val=batches(), progress=False).run()
    result = pk.Pruner(corrected, model=net(), train=batches(), val=batches(), progress=False).run(resume=True)
    assert result.steps and (tmp_path / "run" / "baseline.safetensors").read_bytes() == baseline  # kept
    changed = {**corrected, "finetune": {"epochs": 0}}
    with pytest.raises(pk.ConfigError, match="and the run has pruned since"):
        pk.Pruner(changed, model=net(), train=batches(), val=batches(), progress=False).run(resume=True)


# -- 6. your cost functions -----------------------------------------------------------------------------------------
@given(value=st.floats(0.9e308, 1.7e308))  # two layers priced: their sum overflows
@settings(max_examples=10, deadline=None)
def test_costs_too_large_to_add_up_are_one_line_not_an_empty_result(value):
    with pytest.raises(pk.ConfigError, match="too large to add up"):
        pk.prune_to(net(), torch.zeros(1, 1, 16, 16), 50, overrides={"Conv2d": lambda module, shape: value})


def reads_the_weight(module, shape):
    return module.weight.numel() * shape.output[-1] * shape.output[-2]  # the current size, not the shape's


def test_a_cost_function_reading_the_module_not_its_shape_is_warned_about_at_every_door():
    x = torch.zeros(1, 1, 16, 16)
    with pytest.warns(RuntimeWarning, match="a cost function must depend only on its shape"):
        pk.prune_to(net(), x, 50, overrides={"Conv2d": reads_the_weight})
    model = net()
    budget = pk.ResourceBudget(pk.count(model, x, {"Conv2d": reads_the_weight}), "macs", percent=30)
    step = pk.PruningStep(model, x, budget, overrides={"Conv2d": reads_the_weight})
    with pytest.warns(RuntimeWarning, match="the selection predicted"):
        step.cut(step.propose())


def test_a_glob_that_matches_only_containers_is_one_line():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(8, 8, 3)))
    with pytest.raises(pk.ConfigError, match=r"glob '\?' matches only modules that hold layers"):
        pk.count(model, torch.zeros(1, 1, 16, 16), overrides={"?": lambda module, shape: 1})
    assert pk.count(model, torch.zeros(1, 1, 16, 16), overrides={"?.0": lambda module, shape: 1}).macs == 2


# -- 7. the one-call door's arguments -------------------------------------------------------------------------------
@given(steps=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3)))
@settings(max_examples=25, deadline=None)
def test_prune_to_refuses_steps_that_are_not_a_count(steps):
    with pytest.raises(pk.ConfigError, match=r"^prune_to: steps must be a whole number >= 1"):
        pk.prune_to(net(), torch.zeros(1, 1, 16, 16), 50, steps=steps)


@given(
    layer=st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)),
    minimum=st.one_of(st.integers(max_value=0), st.floats(), st.booleans()),
)
@settings(max_examples=40, deadline=None)
def test_limits_out_of_range_are_refused_where_they_are_made(layer, minimum):
    valid_layer = isinstance(layer, float) and 0 <= layer <= 100
    with pytest.raises(pk.ConfigError, match=r"^Limits: "):
        pk.Limits(layer if not valid_layer else 50.0, min_channels=minimum)
    if not valid_layer:
        with pytest.raises(pk.ConfigError, match=r"^Limits: layer_percent"):
            pk.Limits(layer)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"limits": "x"}, pk.ConfigError, "limits must be a prunekit.Limits, not str"),
        ({"data": []}, pk.ConfigError, "data holds no batch"),
        ({"data": [(torch.zeros(2, 1, 16, 16), torch.zeros(2).long())], "loss": lambda out, _: out.sum() * math.nan},
         pk.TrainingError, "calibrate, batch 1: the loss is nan"),
    ],
    ids=["limits", "no-data", "nan-loss"],
)  # fmt: skip
def test_prune_to_arguments_that_would_rank_on_nothing_are_one_line(arguments, error, message):
    with pytest.raises(error, match=message):
        pk.prune_to(net(), torch.zeros(1, 1, 16, 16), 50, **arguments)


def test_a_protected_layer_given_as_one_name_is_one_name():
    from collections import OrderedDict

    layers = [("stem", nn.Conv2d(1, 16, 3, padding=1)), ("body", nn.Conv2d(16, 32, 3, padding=1)),
              ("pool", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(32, 3))]  # fmt: skip
    pruned = pk.prune_to(nn.Sequential(OrderedDict(layers)), torch.zeros(1, 1, 16, 16), 50, protected="stem")
    assert pruned.model.stem.out_channels == 16 and pruned.model.body.out_channels < 32


# -- 8. the proposal and its cut ------------------------------------------------------------------------------------
def proposed():
    model, x = net(), torch.zeros(1, 1, 16, 16)
    step = pk.PruningStep(model, x, pk.ResourceBudget(pk.count(model, x), "macs", percent=30, step=("percent", 30)))
    return model, step, step.propose()


@given(
    group=st.one_of(st.integers(-3, 12), st.text(max_size=2), st.booleans(), st.none()),
    channels=st.one_of(st.lists(st.one_of(st.integers(-40, 40), st.floats(), st.booleans()), max_size=4),
                       st.integers(), st.text(max_size=3)),
)  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_an_edited_proposal_holds_group_channels_or_is_one_line(group, channels):
    model, step, proposal = proposed()
    groups = proposal.graph.groups
    valid = (
        type(group) is int and 0 <= group < len(groups) and isinstance(channels, list)
        and all(type(c) is int and c in groups[group].prunable for c in channels)
        and len(set(channels)) < groups[group].channels
    )  # fmt: skip
    if not valid:
        with pytest.raises(pk.PruneError, match=r"^Proposal\.edited: "):
            proposal.edited({group: channels})
        return
    edited = proposal.edited({group: channels})
    step.cut(edited)
    assert pk.count(model, torch.zeros(1, 1, 16, 16)).macs == edited.predicted.macs


@pytest.mark.parametrize("veto", [99, -1, True, None, "nope", 1.0])
def test_a_veto_of_what_the_model_does_not_have_is_one_line(veto):
    with pytest.raises(pk.PruneError, match=r"^Proposal\.without: "):
        proposed()[2].without(veto)


def test_a_stale_proposal_is_refused_however_it_went_stale():
    model, step, first = proposed()
    second = step.propose()
    step.cut(first)
    for stale in (first, second):  # cut twice; two proposals from one state
        with pytest.raises(pk.PruneError, match="this proposal no longer fits the model"):
            step.cut(stale)
    model, step, proposal = proposed()
    pk.prune(model, torch.zeros(1, 1, 16, 16), {"0": [0]})  # the model changed behind the step
    with pytest.raises(pk.PruneError, match=r"'0'.weight has shape \(15, 1, 3, 3\), was \(16, 1, 3, 3\)"):
        step.cut(proposal)
    with pytest.raises(pk.PruneError, match="expected a Proposal"):
        step.cut("everything")


# -- 9. crafted files -----------------------------------------------------------------------------------------------
def crafted(finished, tmp_path, name, text):
    import shutil

    from prunekit.run.storage.atomic_files import write_manifest

    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / name).write_text(text)
    if name.startswith("export/") and name != "export/manifest.json":
        write_manifest(run_dir / "export")
    return run_dir


@pytest.mark.parametrize("name", ["export/model.json", "export/plan.json", "export/manifest.json"])
def test_json_nested_beyond_pythons_limits_is_a_corrupt_file_not_a_recursion(finished, tmp_path, capsys, name):
    from prunekit.cli import main

    run_dir = crafted(finished, tmp_path, name, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(pk.CheckpointError, match=r"nested too deeply|is not"):
        pk.load(run_dir)
    assert main(["export", str(run_dir)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_export_asking_for_more_than_its_weights_hold_is_refused_before_it_is_built(finished, tmp_path):
    import json

    description = json.loads((finished / "export" / "model.json").read_text())
    description["args"]["width"] = 1_000_000  # a U-Net of 10^13 numbers: nothing may allocate it
    run_dir = crafted(finished, tmp_path, "export/model.json", json.dumps(description))
    with pytest.raises(pk.PrunekitError, match=r"plan|numbers"):
        pk.load(run_dir)


def broken_summaries():
    numbers = st.one_of(st.none(), st.text(max_size=3), st.lists(st.integers(), max_size=2), st.booleans())
    keys = st.sampled_from(["macs", "params", "original_macs", "macs_percent", "kept", "blocks", "metrics",
                            "baseline_metrics", "speed", "warnings", "task", "class_names"])  # fmt: skip
    return st.dictionaries(keys, numbers, min_size=1, max_size=3)


@given(changes=broken_summaries(), dropped=st.sampled_from(["", "macs", "params_percent", "original_params"]))
@settings(max_examples=30, deadline=None)
def test_a_report_of_a_damaged_summary_is_one_line(finished, tmp_path_factory, changes, dropped):
    import json
    import shutil

    from prunekit.run.reporting.report import write_report

    run_dir = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished, run_dir)
    summary = {**json.loads((run_dir / "summary.json").read_text()), **changes}
    summary.pop(dropped, None)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    try:
        write_report(run_dir, plots=False)
    except pk.PrunekitError as exc:  # a field of the wrong type, or a task no plugin registers
        assert "\n" not in str(exc) and ("summary.json or log.jsonl does not hold" in str(exc) or "task" in str(exc))


@pytest.mark.parametrize(
    "log, fine",
    [('{"event": "step"}\n', False), ("[1, 2]\n", False), ("not json\n", False), ('{"event": "step", "st', True)],
    ids=["fields-missing", "not-a-record", "not-json", "cut-short"],
)
def test_a_report_of_a_damaged_log_is_one_line_and_a_last_line_cut_short_is_left_out(finished, tmp_path, log, fine):
    from prunekit.cli import main

    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(finished, run_dir)
    with open(run_dir / "log.jsonl", "a") as handle:
        handle.write(log)
    assert main(["report", str(run_dir)]) == (0 if fine else 2)


# -- 10. nothing is downloaded --------------------------------------------------------------------------------------
LOADS_A_BACKBONE = ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]


@pytest.mark.parametrize("name", LOADS_A_BACKBONE)
def test_zoo_models_that_load_a_backbone_by_default_are_built_without_it(tmp_path, monkeypatch, name):
    pytest.importorskip("torchvision")
    from prunekit.plugin.manager import manager

    if f"torchvision.{name}" not in manager().names("model"):
        pytest.skip("torchvision does not import beside this torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", lambda *a, **k: pytest.fail("a download"))
    assert isinstance(pk.get("model", f"torchvision.{name}", num_classes=3), nn.Module)
    with pytest.raises(pk.ConfigError, match="weights_backbone: 'DEFAULT' downloads weights"):
        pk.get("model", f"torchvision.{name}", weights_backbone="DEFAULT")
    assert not (tmp_path / "hub").exists()


def test_a_factory_whose_default_loads_weights_is_refused(tmp_path, monkeypatch, capsys):
    from prunekit.cli import main

    (tmp_path / "nets.py").write_text("def backbone_net(num_classes=3, weights_backbone='IMAGENET1K_V1'):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    assert main(["cost", "--model", "nets:backbone_net"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights_backbone is 'IMAGENET1K_V1' by default, which loads weights" in err[0]


# -- 11. the command line -------------------------------------------------------------------------------------------
@given(
    device=st.one_of(st.sampled_from(["meta", "mps", "xla", "hpu", "", "cuda:x", "cpu:", "CPU"]), st.text(max_size=6))
)
@settings(max_examples=30, deadline=None)
def test_a_device_prunekit_does_not_run_on_is_one_line(device):
    import re

    from prunekit.run.config import load_config

    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        return
    with pytest.raises(pk.ConfigError, match=r"^device: .* is not a device prunekit runs on; valid: auto, cpu"):
        load_config({"device": device})


@pytest.mark.parametrize(
    "setting, message",
    [
        ("seed=" + "9" * 5000, "--set seed: not a value prunekit reads (Exceeds the limit"),
        ("seed=" + "9" * 30, "seed: 999999999999999999999999999999 does not fit in 64 bits"),
        ("model.args.width=&a [*a]", "a YAML alias refers to a value that contains it"),
        ("model.args.width=" + "[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ],
    ids=["long-number", "huge-seed", "alias-loop", "deep"],
)
def test_settings_no_reader_could_finish_are_one_line(tmp_path, capsys, setting, message):
    from prunekit.cli import main

    (tmp_path / "c.yaml").write_text("model: {name: unet}\n")
    assert main(["config", str(tmp_path / "c.yaml"), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_aliases_shared_many_times_over_are_read_once_each():
    from prunekit.run.config_source import yaml_value

    levels = ["a0: &a0 [1, 2]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    value = yaml_value("\n".join(levels), "laughs.yaml")  # 9^11 paths, 12 lists: a walk of the lists, not the paths
    assert value["a11"][0] is value["a11"][8] is value["a10"]


def test_an_empty_device_flag_is_an_error_not_ignored(tmp_path, capsys):
    from prunekit.cli import main

    (tmp_path / "c.yaml").write_text("model: {name: unet}\n")
    assert main(["config", str(tmp_path / "c.yaml"), "--device", ""]) == 2
    assert "device: '' is not a device" in capsys.readouterr().err


# -- 12. checkpoints of another kind of number ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_a_checkpoint_of_integers_or_booleans_is_not_cast_into_weights(tmp_path, dtype):
    from prunekit.run.storage.weights import load_into

    model = net()
    state = {k: (v != 0).to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    with pytest.raises(
        pk.CheckpointError,
        match=f"other kinds of number .*: {'bool' if dtype == torch.bool else 'integer'} vs model float",
    ):
        load_into(net(), state, "model.checkpoint")
    untouched = net()
    report = load_into(untouched, state, "model.checkpoint", strict=False)
    assert "loaded" in report and torch.equal(untouched[0].weight, net()[0].weight)
    halves = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert load_into(net(), halves, "model.checkpoint") == ""  # float16 into float32: a cast within a kind


# -- 13. the first hour ---------------------------------------------------------------------------------------------
def test_a_run_that_prunes_nothing_says_why_and_exits_3_unless_allowed(finished, tmp_path, capsys):
    from prunekit.cli import main

    (tmp_path / "worthless.py").write_text("def retrain(step):\n    return 0.0\n")  # every step loses it all
    config = tmp_path / "c.yaml"
    config.write_text((finished / "config.yaml").read_text().replace(str(finished), str(tmp_path / "run")))
    refuse_all = ["--set", "pruning.max_drop=0", "--set", "pruning.retries=0", "--quiet", "--set",
                  "retrain={function: 'worthless:retrain'}", "--set", f"plugins.search=['{tmp_path}']"]  # fmt: skip
    assert main(["run", str(config), *refuse_all]) == 3
    err = capsys.readouterr().err
    assert "prunekit: nothing was pruned: step 1 broke the guard 1 times in a row" in err
    assert main(["run", str(config), "--set", f"run_dir={tmp_path / 'again'}", *refuse_all, "--allow-unpruned"]) == 0


class VGGish(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 3))  # fmt: skip


def test_a_model_class_from_a_script_loads_wherever_it_is_imported_from(tmp_path):
    import json

    from prunekit.run.storage.atomic_files import write_manifest

    torch.manual_seed(0)
    config = {**classification(tmp_path / "run"), "train": {"epochs": 0}}
    pk.Pruner(config, model=VGGish(), train=batches(), val=batches(), progress=False).run()
    described = tmp_path / "run" / "export" / "model.json"
    meta = json.loads(described.read_text())
    meta["object"] = "__main__:VGGish"  # as a training script would have saved it
    described.write_text(json.dumps(meta))
    write_manifest(tmp_path / "run" / "export")
    assert isinstance(pk.load(tmp_path / "run", model=VGGish()), VGGish)
    with pytest.raises(
        pk.CheckpointError, match=r"holds a __main__:VGGish, not a .*Sequential; pass model= a fresh VGGish"
    ):
        pk.load(tmp_path / "run", model=nn.Sequential())
