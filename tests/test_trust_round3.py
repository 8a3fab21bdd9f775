"""Trust, third round: the doors, the step and its proposal, your loop, your functions and your
files under hostile use — each class of fault one line (a ``PrunekitError``; exit 2 from the CLI)
before the run claims its folder wherever that can be known, nothing silently wrong, nothing lost."""

import subprocess
import sys
import textwrap

import pytest
import torch
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
