"""Shared fixtures: a run config small enough for tests, and an isolated plugin manager."""

import copy
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

pytest_plugins = ["prunekit.testing"]  # the plugin_manager fixture, as plugin authors get it

# Hermetic: other installed prunekit plugins (the template, say) do not load into these tests,
# and latency tables are cached in a folder of this session, not the user's cache.
os.environ["PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ["PRUNEKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="prunekit-test-cache-")
# A run's report measures its speed in every runtime that runs here: torch.compile would compile
# each tiny model of each run (20 s and more). The runtimes beyond eager are left to the tests
# about them, which ask for them with a manager of their own (`runtimes_manager`).
os.environ["PRUNEKIT_DISABLE_PLUGINS"] = "prunekit.compile,prunekit.onnxruntime"
if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core: one thread each, not two fighting for it
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and so its subprocesses: the same sums in the same order

IPAD_MIX = {"weight_norm": 0.5, "activation_deviation": 0.5}
#: the tiny, barely trained nets' metrics swing widely between steps; the guard has tests of its own
NO_GUARD = {"max_drop": None, "class_floor": None}


def _tiny_config(run_dir: Path | str, **overrides: Any) -> dict[str, Any]:
    """A width-4 U-Net on 16 generated 32×48 images; ``section__key=value`` overrides one key of a
    section, ``section=value`` a whole section."""
    cfg: dict[str, Any] = {
        "seed": 1,
        "run_dir": str(run_dir),
        "model": {"name": "unet", "args": {"width": 4, "n_classes": 4}},
        "data": {"name": "synthetic_eyes", "args": {"size": [32, 48], "n_train": 16, "n_val": 8}, "batch_size": 8},
        "train": {"epochs": 1},
        "pruning": {
            "prune_away_percent": 50,
            "step": {"percent": 25},
            "criterion": {"weights": dict(IPAD_MIX)},
            "layer_limit_percent": 90,
            "block_limit_percent": 90,
            "calibration_batches": 1,
            **NO_GUARD,
        },
        "retrain": {"epochs_per_step": 1},
        "finetune": {"epochs": 1},
        "distillation": {"hinton": {"weight": 1.0}, "attention": {"weight": 1.0}, "fsp": {"weight": 0.5}},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section] = {**copy.deepcopy(cfg[section]), name: value}
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def tiny_config() -> Callable[..., dict[str, Any]]:
    """The factory of tiny run configs: ``tiny_config(run_dir, **overrides)``."""
    return _tiny_config


@pytest.fixture(scope="module")
def module_tiny_config() -> Callable[..., dict[str, Any]]:
    return _tiny_config
