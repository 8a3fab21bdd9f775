"""An export is data: loading one never imports or runs code it names, and its manifest is the whole truth."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import prunekit as pk
from prunekit.cli import main
from prunekit.run.storage.atomic_files import write_manifest
from tests.conftest import _tiny_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run directory with an export of a pruned tiny U-Net; tests copy it before changing it."""
    run_dir = tmp_path_factory.mktemp("exported") / "run"
    cfg = _tiny_config(run_dir, retrain="none", finetune={"epochs": 0}, train={"epochs": 0})
    pk.Pruner.from_config({**cfg, "pruning": {**cfg["pruning"], "max_steps": 1}}, progress=False).run()
    return run_dir / "export"


@pytest.fixture
def export(exported, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    return folder


def rewrite_model_json(folder, **fields):
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, **fields}))
    write_manifest(folder)  # a hostile export is consistent with its own manifest


def test_an_export_naming_os_system_runs_nothing_in_a_fresh_process(export, tmp_path):
    marker = tmp_path / "ran"
    rewrite_model_json(export, name=None, factory="os:system", args={"command": f"touch {marker}"})
    script = f"import prunekit as pk; pk.load({str(export)!r})"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and not marker.exists()
    assert "CheckpointError" in done.stderr and "factory 'os:system'" in done.stderr
    assert "trust_code=True" in done.stderr


def test_the_cli_asks_for_trust_before_importing_a_plugin_file_an_export_names(export, tmp_path, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    rewrite_model_json(export, plugins={"load": [str(tmp_path / "evil.py")], "search": []})
    assert main(["export", str(export)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "evil.py" in err[0] and "--trust-code" in err[0]
    assert not marker.exists()
    assert main(["export", str(export), "--trust-code"]) == 0
    assert marker.exists()  # trusted: the plugin file is imported, as the run that made the export did


def test_a_fresh_instance_loads_an_export_that_names_a_factory_without_importing_it(export):
    rewrite_model_json(export, name=None, factory="no_such_module_anywhere:build", args={})
    net = pk.load(export, model=pk.get("model", "unet", width=4, n_classes=4))
    assert net(torch.zeros(1, 1, 32, 48)).shape == (1, 4, 32, 48)


@pytest.mark.parametrize(
    "entry, message",
    [
        ("../weights.safetensors", "not a file name in it"),
        ("/etc/passwd", "not a file name in it"),
        ("sub/plan.json", "not a file name in it"),
        ("..", "not a file name in it"),
    ],
)
def test_manifest_entries_outside_the_folder_are_refused_before_hashing(export, entry, message):
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["files"][entry] = "0" * 64
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(pk.CheckpointError, match=message):
        pk.load(export)


def test_a_file_the_manifest_does_not_list_is_refused(export):
    manifest = json.loads((export / "manifest.json").read_text())
    del manifest["files"]["weights.safetensors"]
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(pk.CheckpointError, match=r"does not list: weights\.safetensors"):
        pk.load(export)


def test_a_listed_file_replaced_by_a_link_is_refused(export, tmp_path):
    outside = tmp_path / "outside.safetensors"
    (export / "weights.safetensors").rename(outside)
    os.symlink(outside, export / "weights.safetensors")
    with pytest.raises(pk.CheckpointError, match="is a link"):
        pk.load(export)
