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
