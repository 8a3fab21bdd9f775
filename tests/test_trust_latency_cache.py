"""A latency cache is data, not truth: a damaged entry is dropped with one warning, measured again
and written back whole, so the next run neither trusts it nor fails on it."""

import json
import warnings

import pytest
import torch
import yaml
from torch import nn

import prunekit as pk
from prunekit.cli import main
from prunekit.cost.latency_table import build_table
from tests.conftest import _tiny_config


def small():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1)).eval()


@pytest.fixture(autouse=True)
def sized_timing(monkeypatch):
    """Layers 'time' by their parameter count: the tests see what the cache does, never timing noise."""
    monkeypatch.setattr(
        "prunekit.cost.latency_table._in_turns",
        lambda variants, repeats: [1e-6 * sum(p.numel() for p in m.parameters()) + 1e-6 for m, _, _ in variants],
    )


def first_grid(entry):
    return entry["seconds"]


DAMAGE = {
    "negative": lambda e: first_grid(e)[0].__setitem__(0, -1e-3),
    "zero": lambda e: first_grid(e)[-1].__setitem__(-1, 0),
    "nan": lambda e: first_grid(e)[0].__setitem__(0, float("nan")),
    "string": lambda e: first_grid(e)[0].__setitem__(0, "fast"),
    "empty ins": lambda e: e.__setitem__("ins", []),
    "ragged": lambda e: first_grid(e).append([1.0]),
    "falling": lambda e: first_grid(e)[-1].__setitem__(-1, first_grid(e)[0][0] * 1e-3),
    "not a grid": lambda e: e.clear(),
}


def build(graph):
    return build_table(graph, torch.device("cpu"), repeats=1, align=8)


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path))
    graph = pk.trace(small(), torch.randn(1, 1, 8, 8))
    build(graph)
    (path,) = (tmp_path / "latency").glob("*.json")
    return graph, path


def damage(path, change):
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        change(entry)
    path.write_text(json.dumps(data))


def build_warnings(graph):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        table = build(graph)
    return table, [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_entry_is_measured_again_with_one_warning_and_repaired(cached, kind):
    graph, path = cached
    damage(path, DAMAGE[kind])
    table, seen = build_warnings(graph)
    assert len(seen) == 1 and "could not be trusted" in seen[0], seen
    assert table.measured == len(table.entries) == 3
    assert all(v > 0 for e in table.entries.values() for row in e.seconds for v in row)
    again, seen = build_warnings(graph)
    assert again.measured == 0 and not seen  # written back whole


@pytest.mark.parametrize("text", ['{"format": 2, "entries": []}', "[1, 2]", "{not json", '{"format": 2}'])
def test_a_cache_file_that_is_no_cache_is_measured_again_with_one_warning(cached, text):
    graph, path = cached
    path.write_text(text)
    table, seen = build_warnings(graph)
    assert len(seen) == 1 and "is unusable" in seen[0] and table.measured == len(table.entries), seen
    assert build_warnings(graph)[0].measured == 0


def test_a_run_with_a_damaged_cache_repairs_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = _tiny_config(tmp_path / "run", retrain="none", finetune={"epochs": 0}, train={"epochs": 0})
    cfg["pruning"] = {**cfg["pruning"], "target_speedup": 1.05, "max_steps": 1, "latency_repeats": 1}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "cfg.yaml"), "--quiet"]) == 0
    (path,) = (tmp_path / "cache" / "latency").glob("*.json")
    damage(path, DAMAGE["negative"])
    cfg["run_dir"] = str(tmp_path / "run2")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.warns(RuntimeWarning, match="could not be trusted") as seen:
        assert main(["run", str(tmp_path / "cfg.yaml"), "--quiet"]) == 0
    assert sum("latency table cache" in str(w.message) for w in seen) == 1
    data = json.loads(path.read_text())
    assert all(v > 0 for e in data["entries"].values() for row in e["seconds"] for v in row)
