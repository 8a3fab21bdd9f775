"""Runtimes: where a pruned model is deployed and timed. The built-in ones, a plugin's, their names
and errors, the latency table per runtime, and the report's speed-up in every runtime — with a
warning where the pruned model runs slower. Timing is injected wherever a test asserts on it."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.cost.latency_table import build_table, calibrate_table
from prunekit.plugin import eager
from prunekit.plugin.manager import Manager
from prunekit.pruning import thinned_copy
from prunekit.testing import ContractError, check_runtime

from .conftest import NO_GUARD

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
X = torch.randn(1, 3, 16, 16)


def small():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 2, 1)).eval()


@pytest.fixture
def runtimes_manager(monkeypatch):
    """A manager with every built-in runtime (the suite disables the ones that compile or export)."""
    with monkeypatch.context() as patch:
        patch.delenv("PRUNEKIT_DISABLE_PLUGINS", raising=False)
        return Manager()


class Counted:
    """A runtime that runs eagerly and counts what it is asked to prepare."""

    version_text = "1.0"

    def __init__(self, name="counted", times_layers=True, why=None, fails=False):
        self.name, self.times_layers, self.why, self.fails = name, times_layers, why, fails
        self.prepared: list[nn.Module] = []

    def available(self, device):
        return self.why

    def version(self):
        return self.version_text

    def alignment(self, device):
        return 8

    def prepare(self, model, example):
        if self.fails:
            raise RuntimeError("no kernel for this operator")
        self.prepared.append(model)
        return eager(model, example)


class RuntimesPlugin:
    def __init__(self, *runtimes):
        self.runtimes = runtimes

    @pk.hookimpl
    def prunekit_runtimes(self):
        return [pk.Spec(r.name, lambda r=r: r, "a test runtime") for r in self.runtimes]


def test_the_built_in_runtimes_are_registered_and_listed(runtimes_manager):
    assert {"eager", "compile", "onnxruntime"} <= set(runtimes_manager.names("runtime"))
    environ = {k: v for k, v in os.environ.items() if k != "PRUNEKIT_DISABLE_PLUGINS"}
    listed = subprocess.run(
        [sys.executable, "-m", "prunekit", "plugins"], capture_output=True, text=True, env=environ
    ).stdout
    assert all(name in listed for name in ("eager", "compile", "onnxruntime")) and "runtime" in listed


@pytest.mark.parametrize("name", ["eager", "onnxruntime", pytest.param("compile", marks=pytest.mark.slow)])
def test_the_built_in_runtimes_keep_the_contract(runtimes_manager, name):
    check_runtime(runtimes_manager.get("runtime", name))  # where one cannot run here, it says why in one line


def test_the_contract_check_catches_a_broken_runtime():
    check_runtime(Counted())
    check_runtime(Counted(why="needs a GPU"))  # nothing more is asked of a runtime that cannot run
    for broken, message in (
        (Counted(name=""), "needs a name"),
        (Counted(why="two\nlines"), "one line"),
        (Counted(fails=True), "no kernel for this operator"),
    ):
        with pytest.raises((ContractError, RuntimeError), match=message):
            check_runtime(broken)
    unaligned = Counted()
    unaligned.alignment = lambda device: 0
    with pytest.raises(ContractError, match="alignment\\(\\) gave 0"):
        check_runtime(unaligned)


def test_an_unknown_runtime_is_one_line_naming_the_choices(runtimes_manager, tmp_path):
    with pytest.raises(pk.PluginError, match="unknown runtime 'onnxruntim'; did you mean 'onnxruntime'"):
        pk.prune_to(small(), X, runtime="onnxruntim", plugins=runtimes_manager)
    with pytest.raises(pk.PluginError, match=r"pruning\.runtime: unknown runtime 'eagr'; did you mean 'eager'"):
        pk.load_config({"pruning": {"runtime": "eagr"}})
    with pytest.raises(pk.PluginError, match=r"pruning\.compare_runtimes: unknown runtime 'fast'"):
        pk.load_config({"pruning": {"compare_runtimes": ["eager", "fast"]}})


def test_onnxruntime_missing_is_one_line_naming_the_extra(tmp_path):
    """A real interpreter in which onnxruntime does not import."""
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import torch, prunekit as pk\n"
        "try:\n"
        "    pk.prune_to(torch.nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 8, 8), target_speedup=2, runtime='onnxruntime')\n"
        "except pk.ConfigError as error:\n"
        "    print(error)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "PRUNEKIT_DISABLE_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=tmp_path)
    assert done.stdout.strip() == (
        "runtime 'onnxruntime' cannot run here: onnxruntime not installed: pip install 'prunekit[onnx]'"
    ), done.stderr[-1000:]


@pytest.mark.skipif(not HAS_ORT, reason="the onnx extra is not installed: pip install 'prunekit[onnx]'")
def test_onnxruntime_runs_the_model_as_prunekit_exports_it(runtimes_manager):
    runtime = runtimes_manager.get("runtime", "onnxruntime")
    model = small()
    assert runtime.available(torch.device("cpu")) is None and runtime.alignment(torch.device("cpu")) == 16
    (output,) = runtime.prepare(model, X)()
    assert torch.allclose(torch.from_numpy(output), model(X), atol=1e-5)
    base, pruned = pk.cost.measure_rounds([model, small()], X, repeats=3, runtime=runtime)
    assert len(base) == len(pruned) == 3 and min(base + pruned) > 0
    assert "on the CPU" in runtime.available(torch.device("cuda"))


@pytest.mark.slow
def test_compile_runs_the_compiled_model_and_times_layers_eagerly(runtimes_manager):
    runtime = runtimes_manager.get("runtime", "compile")
    if runtime.available(torch.device("cpu")) is not None:
        pytest.skip(runtime.available(torch.device("cpu")))
    model = small()
    assert not runtime.times_layers
    assert torch.allclose(runtime.prepare(model, X)(), model(X), atol=1e-5)


def test_latency_tables_are_cached_per_runtime_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(  # layers 'time' by their parameter count: the cache is what is under test
        "prunekit.cost.latency_table._in_turns",
        lambda variants, repeats: [1e-6 * sum(p.numel() for p in m.parameters()) + 1e-6 for m, _, _ in variants],
    )
    graph, runtime = pk.trace(small(), X), Counted()
    for layers_in in (None, runtime):
        build_table(graph, torch.device("cpu"), runtime=layers_in)
    runtime.version_text = "2.0"
    table = build_table(graph, torch.device("cpu"), runtime=runtime)
    files = {json.loads(p.read_text())["runtime"] for p in (tmp_path / "latency").glob("*.json")}
    assert files == {"eager", "counted 1.0", "counted 2.0"} and table.runtime == "counted 2.0"
    assert table.align == 8  # the runtime's alignment


def test_a_runtime_that_does_not_time_layers_gets_eager_layers_and_its_own_whole_forwards(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    model = small()
    graph, runtime = pk.trace(model, X), Counted(times_layers=False)
    table = build_table(graph, torch.device("cpu"), repeats=1, runtime=runtime)
    thin = thinned_copy(model, lambda m: pk.trace(m, X), table.align)
    calibrate_table(table, X, (model, graph), thin, repeats=1, runtime=runtime)
    assert runtime.prepared == [model, thin[0]]  # the whole forwards only
    assert [json.loads(p.read_text())["runtime"] for p in (tmp_path / "latency").glob("*.json")] == ["eager"]


class WholeModelsOnly(Counted):
    """A runtime that refuses single layers (an operator it cannot export alone, say)."""

    def prepare(self, model, example):
        if not isinstance(model, nn.Sequential):
            raise RuntimeError(f"cannot export a lone {type(model).__name__}")
        return super().prepare(model, example)


def test_layers_a_runtime_cannot_run_alone_are_timed_eagerly_and_a_model_it_cannot_run_is_one_line(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    model = small()
    graph, runtime = pk.trace(model, X), WholeModelsOnly()
    with pytest.warns(RuntimeWarning, match="layers are timed in eager PyTorch, which counted 1.0 cannot run alone"):
        table = build_table(graph, torch.device("cpu"), repeats=1, runtime=runtime)
    assert table.alone == set(table.entries) and table.entries
    assert not (tmp_path / "latency").exists()  # nothing the runtime measured: nothing cached
    thin = thinned_copy(model, lambda m: pk.trace(m, X), table.align)
    calibrate_table(table, X, (model, graph), thin, repeats=1, runtime=runtime)
    assert runtime.prepared == [model, thin[0]] and len(table.calibration) == 2
    with pytest.raises(pk.ConfigError, match=r"runtime 'counted' cannot run Conv2d \(RuntimeError: cannot export"):
        pk.cost.measure_rounds([nn.Conv2d(3, 4, 1)], X, repeats=1, runtime=runtime)


def run_config(tmp_path, tiny_config, **pruning):
    return tiny_config(
        tmp_path / "run", train={"epochs": 0}, retrain={"epochs_per_step": 0}, finetune={"epochs": 0},
        distillation={}, pruning={"prune_away_percent": 50, "step": {"percent": 50}, **NO_GUARD, **pruning},
    )  # fmt: skip


def test_the_report_measures_in_every_runtime_and_warns_where_the_pruned_model_is_slower(
    tmp_path, tiny_config, monkeypatch, capsys
):
    slow, away, broken = Counted("slowpoke"), Counted("nowhere", why="needs a GPU"), Counted("broken", fails=True)

    def measured(models, x, repeats, runtime):  # the pruned model: twice as fast, but slower in slowpoke
        runtime.prepare(models[0], x)
        seconds = (1.0, 1.25) if runtime.name == "slowpoke" else (2.0, 1.0)
        return [[s] * repeats for s in seconds]

    monkeypatch.setattr("prunekit.run.speed.measure_rounds", measured)
    with pk.registered(RuntimesPlugin(slow, away, broken)):
        result = pk.Pruner(run_config(tmp_path, tiny_config, compare_runtimes="all")).run()
    rows = {(r["runtime"], r["batch"]): r for r in result.summary["speed"]}
    assert set(rows) == {("eager", 1), ("eager", 8), ("slowpoke", 1), ("nowhere", 1), ("broken", 1)}
    assert rows["eager", 1]["speedup"] == 2.0 and rows["slowpoke", 1]["speedup"] == 0.8
    assert rows["nowhere", 1]["unavailable"] == "needs a GPU"
    assert rows["broken", 1]["unavailable"].startswith("failed on this model (RuntimeError: no kernel")
    (warning,) = result.summary["warnings"]
    assert "runs slower than the baseline in slowpoke at batch 1 (0.80×" in warning
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Warnings" in report and warning in report and "| latency, slowpoke, batch 1 |" in report
    assert "0.80× (0.80–0.80) slower" in str(result) and "not measured: needs a GPU" in str(result)
    shown = capsys.readouterr()
    assert f"warning: {warning}" in shown.out + shown.err
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["message"] for r in log if r["event"] == "warning"] == [warning]


def test_a_named_runtime_that_cannot_run_here_stops_the_run_before_it_writes(tmp_path, tiny_config):
    with pk.registered(RuntimesPlugin(Counted("nowhere", why="needs a GPU"))):
        for pruning in ({"runtime": "nowhere"}, {"compare_runtimes": ["nowhere"]}):
            with pytest.raises(pk.ConfigError, match="runtime 'nowhere' cannot run here: needs a GPU"):
                pk.Pruner(run_config(tmp_path, tiny_config, **pruning)).run()
            assert not (tmp_path / "run").exists()


def test_a_latency_budget_measures_in_the_runs_runtime(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path / "cache"))
    runtime = Counted()
    with pk.registered(RuntimesPlugin(runtime)):
        config = run_config(tmp_path, tiny_config, resource="latency", target_speedup=1.2, runtime="counted",
                            compare_runtimes=[], latency_repeats=2, max_steps=2)  # fmt: skip
        result = pk.Pruner(config, progress=False).run()
    assert len(runtime.prepared) > 4  # the table's layers, its calibration, every step's measurement
    cached = [json.loads(p.read_text())["runtime"] for p in (tmp_path / "cache" / "latency").glob("*.json")]
    assert cached == ["counted 1.0"]  # the table's layers were timed in the run's runtime
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(s["speedup_low"] <= s["speedup"] <= s["speedup_high"] for s in steps if s["event"] == "step")
    assert {r["runtime"] for r in result.summary["speed"]} == {"counted"}
