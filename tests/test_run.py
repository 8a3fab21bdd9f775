"""The end-to-end run: export/load, report, resume after a kill, distillation, the teacher."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

import prunekit as pk
from prunekit.run.pruner import Pruner


@pytest.fixture(scope="module")
def finished(tmp_path_factory, module_tiny_config):
    tmp = tmp_path_factory.mktemp("e2e")
    pruner = Pruner.from_config(module_tiny_config(tmp / "run"), progress=False)
    return pruner, pruner.run(), tmp / "run"


def test_export_loads_and_matches_the_pruned_model(finished):
    _pruner, result, run_dir = finished
    loaded = pk.load(run_dir)
    x = torch.randn(2, 1, 32, 48)
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))
    assert result.summary["macs_percent"] <= 50.0
    assert pk.count(loaded, x).macs == pk.count(result.model, x).macs


def test_teacher_is_unchanged_by_the_run(finished):
    _, result, _ = finished
    assert result.summary["teacher_hash_before"] == result.summary["teacher_hash_after"]


def test_run_directory_holds_everything(finished):
    _, result, run_dir = finished
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.yaml",
        "log.jsonl",
        "checkpoints",
        "export",
        "summary.json",
        "report.md",
        "baseline.safetensors",
    } <= names
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert {"train", "retrain", "finetune"} <= {r["phase"] for r in log if r["event"] == "epoch"}
    assert sum(r["event"] == "step" for r in log) == len(result.steps) >= 2
    summary = json.loads((run_dir / "summary.json").read_text())
    measured = {(row["runtime"], row["batch"]): row for row in summary["speed"]}
    assert set(measured) == {("eager", 1), ("eager", 8)}  # the run's runtime; the others are disabled in tests
    assert measured["eager", 1]["pruned_ms"] > 0 and 0 <= summary["metrics"]["miou"] <= 1


def test_report_writes_its_plots(finished, capsys):
    from prunekit.cli import main

    _, _, run_dir = finished
    assert main(["report", str(run_dir)]) == 0
    for name in ("steps.png", "channels.png", "blocks.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
    assert "![MACs and mIoU per step](steps.png)" in (run_dir / "report.md").read_text()
    assert "mIoU" in capsys.readouterr().out


def test_onnx_export_matches_pytorch_and_never_leaves_a_failed_file(finished, tmp_path, capsys):
    from prunekit.cli import main

    pytest.importorskip("onnxruntime")
    _, _, run_dir = finished
    assert main(["export", str(run_dir), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "m.onnx").stat().st_size > 10_000 and "largest difference from PyTorch" in out
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary file left beside it


def test_corrupt_or_mismatched_export_is_a_clear_error(finished, tmp_path):
    _, _, run_dir = finished
    import shutil

    from prunekit.run.storage.atomic_files import write_manifest

    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "export", broken)
    (broken / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(pk.CheckpointError, match=r"weights\.safetensors' has changed since it was written"):
        pk.load(broken)
    write_manifest(broken)  # as if the bytes had been written so: the reader says what is wrong with them
    with pytest.raises(pk.CheckpointError, match="corrupt or not a weights file"):
        pk.load(broken)
    meta = json.loads((broken / "model.json").read_text())
    shutil.copy(run_dir / "export" / "weights.safetensors", broken / "weights.safetensors")
    (broken / "model.json").write_text(json.dumps({**meta, "args": {"width": 8, "n_classes": 4}}))
    write_manifest(broken)
    with pytest.raises(pk.PruneError, match=r"plan expects layer .* to have \d+ \w+ channels, the model has \d+"):
        pk.load(broken)
    with pytest.raises(pk.CheckpointError, match=r"no model\.json"):
        pk.load(tmp_path)


def test_malformed_files_are_clear_errors(finished, tmp_path):
    from prunekit.run.storage.checkpoints import load_last
    from prunekit.run.storage.weights import load_weights

    _, result, _run_dir = finished
    pickled = tmp_path / "model.pt"
    torch.save(result.model, pickled)  # a whole pickled model, not a state dict
    with pytest.raises(pk.CheckpointError, match="corrupt or not a weights file"):
        load_weights(pickled)
    plan = result.plan.to_dict()
    layer = next(iter(plan["keep"]))
    for broken in ({**plan, "sizes": {}}, {**plan, "keep": {layer: {"sideways": [0]}}}):
        with pytest.raises(pk.PruneError, match="malformed plan"):
            pk.Plan.from_dict(broken)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.json").write_text('{"dir": "step_0001"}')
    with pytest.raises(pk.CheckpointError, match="not a checkpoint index"):
        load_last(tmp_path)


@pytest.mark.slow
def test_resume_after_a_kill_between_steps_finishes_with_the_same_plan(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path / "killed", finetune={"epochs": 0}, distillation={"hinton": {"weight": 1.0}})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    process = subprocess.Popen(
        [sys.executable, "-m", "prunekit", "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = tmp_path / "killed" / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert last.exists()
    assert not (tmp_path / "killed" / "export").exists()  # it died before the end
    resumed = subprocess.run(
        [sys.executable, "-m", "prunekit", "run", str(path), "--resume"], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = Pruner.from_config({**cfg, "run_dir": str(tmp_path / "straight")}, progress=False).run()
    plan = json.loads((tmp_path / "killed" / "export" / "plan.json").read_text())
    assert plan["keep"] == straight.plan.keep


def test_demo_config_is_printed_and_valid(capsys):
    from prunekit.cli import main

    assert main(["demo", "--config-only"]) == 0
    cfg = pk.load_config(yaml.safe_load(capsys.readouterr().out))
    assert cfg.model.name == "unet" and cfg.data.name == "synthetic_eyes"
    assert cfg.pruning.criterion.weights == pk.load_config({}).pruning.criterion.weights  # the default preset's
    assert "hinton" in cfg.distillation


def test_a_speedup_is_told_with_its_interval_as_slower_or_not_at_all_when_the_rounds_disagree():
    from prunekit.cost.latency import speedup
    from prunekit.run.reporting.report import summary_rows
    from prunekit.run.speed import slower

    base = [0.020] * 10
    steady = speedup([0.010] * 6 + [0.011] * 4, base)
    busy = speedup([0.010, 0.030, 0.012, 0.050, 0.010, 0.025, 0.011, 0.040, 0.010, 0.020], base)
    slow = speedup([0.022] * 10, base)
    assert steady.median == pytest.approx(2.0) and steady.low == pytest.approx(2 / 1.1) and not steady.busy
    assert busy.busy and slow.high < 1
    summary = {"original_macs": 10, "macs": 5, "macs_percent": 50.0, "original_params": 4, "params": 2,
               "params_percent": 50.0}  # fmt: skip
    speed = [
        {"runtime": name, "batch": 1, "baseline_ms": 20.0, "pruned_ms": 10.0, "speedup": s.median, "low": s.low,
         "high": s.high}
        for name, s in (("eager", steady), ("compile", busy), ("onnxruntime", slow))
    ] + [{"runtime": "tensorrt", "batch": 1, "unavailable": "needs a GPU"}]  # fmt: skip
    rows = summary_rows({**summary, "speed": speed}, None)
    assert rows[0][3] == "50.0 % kept" and [r[0] for r in rows[2:]] == [
        "latency, eager, batch 1", "latency, compile, batch 1", "latency, onnxruntime, batch 1",
        "latency, tensorrt, batch 1"]  # fmt: skip
    assert rows[2][3] == "2.00× (1.82–2.00) faster" and rows[3][3].startswith("too busy to tell: ")
    assert rows[4][3] == "0.91× (0.91–0.91) slower" and rows[5][3] == "not measured: needs a GPU"
    (warning,) = slower(speed)
    assert "slower than the baseline in onnxruntime at batch 1 (0.91×" in warning and "pruning.align" in warning
    former = {"baseline_batch1": 0.02, "pruned_batch1": 0.01, "speedup_batch1": 2.0, "spread_batch1": 0.1}
    rows = summary_rows({**summary, "latency": former}, None)  # a run summarised before runtimes were named
    assert rows[2] == ["latency, eager, batch 1", "20.0 ms", "10.0 ms", "2.00× (2.00–2.00) faster"]


def test_event_hooks_see_the_run_through_frozen_records(tmp_path, tiny_config):
    import dataclasses

    from prunekit.plugin import EpochRecord, RunInfo, StepRecord

    seen = []

    class Listener:
        @pk.hookimpl
        def prunekit_run_started(self, run):
            seen.append(("started", run))

        @pk.hookimpl
        def prunekit_step_done(self, run, record):
            seen.append(("step", record))
            with pytest.raises(dataclasses.FrozenInstanceError):
                record.macs = 0

        @pk.hookimpl
        def prunekit_epoch_done(self, run, record):
            seen.append(("epoch", record))

        @pk.hookimpl
        def prunekit_run_finished(self, run, summary):
            seen.append(("finished", summary))

    with pk.registered(Listener()):
        result = Pruner(tiny_config(tmp_path / "run", finetune={"epochs": 1}), progress=False).run()
    (_, info), *_ = seen
    assert isinstance(info, RunInfo) and info.task == "segmentation" and info.run_dir == tmp_path / "run"
    assert info.config["pruning"]["prune_away_percent"] == 50 and info.macs == result.summary["original_macs"]
    steps = [r for kind, r in seen if kind == "step"]
    assert [r.step for r in steps] == [s.step for s in result.steps] and all(isinstance(r, StepRecord) for r in steps)
    epochs = [r for kind, r in seen if kind == "epoch"]
    assert {e.phase for e in epochs} == {"retrain", "finetune"} and all(isinstance(e, EpochRecord) for e in epochs)
    assert all("miou" in e.metrics and e.terms for e in epochs) and seen[-1][1]["steps"] == len(result.steps)
