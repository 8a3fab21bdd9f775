"""Real multi-process runs under torchrun with the gloo backend on CPU."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import prunekit as pk
from prunekit.distributed import torchrun_command
from prunekit.run.pruner import Pruner
from prunekit.run.reporting.run_log import read_steps

from .conftest import NO_GUARD

pytestmark = pytest.mark.slow  # each test starts two worker processes


@pytest.fixture
def write(tiny_config):
    """Write a tiny config for two processes; returns its path and the dict."""

    def make(tmp_path, name, **extra):
        cfg = tiny_config(
            tmp_path / name,
            **{
                "seed": 2,
                "data__batch_size": 4,
                "pruning__calibration_batches": 2,
                "distillation": {"hinton": {"weight": 1.0}, "fsp": {"weight": 0.5}},
                **extra,
            },
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path, cfg

    return make


def torchrun(config, *args, **kwargs):
    command = torchrun_command(2, "-m", "prunekit", "run", str(config), *args)
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


def test_two_process_run_finishes_with_identical_ranks(tmp_path, write):
    config, _cfg = write(tmp_path, "ddp")
    result = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(config), "--nproc", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_steps(tmp_path / "ddp")
    assert len(records) >= 2
    assert all(r["ranks_identical"] == 1.0 for r in records)  # both ranks: same plan, same weights
    x = torch.zeros(1, 1, 32, 48)
    assert pk.count(pk.load(tmp_path / "ddp"), x).macs <= 0.5 * pk.count(pk.get("model", "unet", width=4), x).macs


def test_one_shot_plan_equals_the_single_process_plan(tmp_path, write):
    extra = {"retrain": "none", "finetune": {"epochs": 0}, "distillation": {}, "train": {"epochs": 0}}
    config, cfg = write(tmp_path, "ddp_oneshot", **extra)
    result = torchrun(config)
    assert result.returncode == 0, result.stderr[-2000:]
    single = Pruner.from_config({**cfg, "run_dir": str(tmp_path / "single")}, progress=False).run()
    plan = json.loads((tmp_path / "ddp_oneshot" / "export" / "plan.json").read_text())
    assert plan["keep"] == single.plan.keep


def test_resume_under_torchrun(tmp_path, write):
    config, _cfg = write(tmp_path, "ddp_resume", finetune={"epochs": 0})
    command = torchrun_command(2, "-m", "prunekit", "run", str(config))
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    last = tmp_path / "ddp_resume" / "checkpoints" / "last.json"
    deadline = time.time() + 180
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert last.exists() and not (tmp_path / "ddp_resume" / "export").exists()
    result = torchrun(config, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_steps(tmp_path / "ddp_resume")
    assert [r["step"] for r in records][-1] >= 2 and all(r["ranks_identical"] == 1.0 for r in records)
    assert (tmp_path / "ddp_resume" / "export" / "plan.json").exists()


def test_a_latency_budget_under_torchrun_stops_every_rank_together(tmp_path, write):
    extra = {"retrain": "none", "finetune": {"epochs": 0}, "distillation": {}, "train": {"epochs": 0}}
    pruning = {"resource": "latency", "target_speedup": 1.3, "step": {"percent": 15}, "max_steps": 5, **NO_GUARD}
    config, _ = write(
        tmp_path, "ddp_latency", **extra, pruning={**pruning, "criterion": {"weights": {"weight_norm": 1}}}
    )
    result = torchrun(config, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_steps(tmp_path / "ddp_latency")
    assert records and all(r["ranks_identical"] == 1.0 and r["speedup"] > 0 for r in records)
