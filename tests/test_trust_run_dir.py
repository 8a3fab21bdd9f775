"""A run directory is owned, not guessed: one process at a time, no run inside another, no logger
writing over the run's own files or through a link, no silent restart, and SIGTERM ends a run as
Ctrl-C does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from prunekit.cli import main
from tests.conftest import _tiny_config


def one_step_config(tmp_path, run_dir, name="cfg.yaml", **overrides):
    cfg = _tiny_config(run_dir, retrain="none", finetune={"epochs": 0}, train={"epochs": 0}, **overrides)
    cfg["pruning"]["max_steps"] = 1
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, capsys):
    """A finished one-step run and its config."""
    config = one_step_config(tmp_path, tmp_path / "run")
    assert run_cli(["run", config, "--quiet"], capsys)[0] == 0
    return config, tmp_path / "run"


def test_a_second_process_on_a_live_run_is_refused_naming_the_holder(finished, capsys):
    config, run_dir = finished
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from prunekit.run.storage.run_dir import Lock; "
         f"lock = Lock(Path({str(run_dir)!r})); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run_dir)
        for flags in (["--resume"], []):
            code, err = run_cli(["run", config, "--quiet", *flags], capsys)
            assert code == 2 and len(err) == 1 and f"is in use by process {holder.pid}" in err[0], err
        assert snapshot(run_dir) == before
    finally:
        holder.communicate("")
    assert run_cli(["run", config, "--quiet", "--resume"], capsys)[0] == 0  # the holder is gone: so is its lock


def test_a_run_inside_another_run_is_refused_and_a_resume_never_deletes_one(finished, tmp_path, capsys):
    _, outer = finished
    inner = one_step_config(tmp_path, outer / "export" / "inner", name="inner.yaml")
    code, err = run_cli(["run", inner, "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and "is inside the run" in err[0], err
    assert not (outer / "export" / "inner").exists()
    stray = outer / "checkpoints" / "moved-in"  # a run moved into another by hand
    os.makedirs(stray)
    (stray / "prunekit-run.json").write_text("{}")
    code, err = run_cli(["run", tmp_path / "cfg.yaml", "--quiet", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "holds another run at" in err[0], err
    assert (stray / "prunekit-run.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["log.jsonl", "config.yaml", "prunekit-run.json", "export/model.json", "../x.csv"])
def test_a_logger_may_not_name_the_runs_own_files(tmp_path, capsys, name):
    config = one_step_config(tmp_path, tmp_path / "run", logging=[{"csv": {"filename": name}}])
    code, err = run_cli(["run", config, "--quiet"], capsys)
    assert code == 2 and len(err) == 1 and "logging" in err[0] and repr(name) in err[0], err
    assert not (tmp_path / "run").exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("name", ["log.jsonl", "steps.csv"])
def test_a_file_of_the_run_replaced_by_a_link_is_never_written_through(tmp_path, capsys, name):
    config = one_step_config(tmp_path, tmp_path / "run", logging=[{"csv": {"filename": "steps.csv"}}])
    assert run_cli(["run", config, "--quiet"], capsys)[0] == 0
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("someone else's file\n")
    (tmp_path / "run" / name).unlink()
    os.symlink(elsewhere, tmp_path / "run" / name)
    code, err = run_cli(["run", config, "--quiet", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and "is a link" in err[0], err
    assert elsewhere.read_text() == "someone else's file\n"


@pytest.mark.parametrize(
    "remove, message", [("checkpoints/last.json", "last.json' is missing"), ("baseline.safetensors", "is missing")]
)
def test_a_lost_index_or_baseline_is_an_error_saying_how_to_go_on_not_a_restart(finished, capsys, remove, message):
    config, run_dir = finished
    (run_dir / remove).unlink()
    before = snapshot(run_dir)
    code, err = run_cli(["run", config, "--quiet", "--resume"], capsys)
    assert code == 2 and len(err) == 1 and message in err[0] and "new run_dir" in err[0], err
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_sigterm_ends_a_run_as_ctrl_c_does_and_the_run_resumes(tmp_path):
    cfg = _tiny_config(tmp_path / "run", train={"epochs": 0}, finetune={"epochs": 0})
    cfg["retrain"] = {"epochs_per_step": 20}  # long enough to be stopped in
    cfg["pruning"]["max_steps"] = 2
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = subprocess.Popen(
        [sys.executable, "-m", "prunekit", "run", str(tmp_path / "cfg.yaml"), "--quiet"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / "run" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 300  # a bound on waiting, not a measurement
    while not last.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.is_file(), "the first step never finished"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 143 and "prunekit: terminated" in err and "--resume" in err, err[-2000:]
    assert "Traceback" not in err
    assert json.loads(last.read_text())["step"] >= 1
    resumed = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(tmp_path / "cfg.yaml"), "--quiet", "--resume"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(last.read_text())["step"] == 2
