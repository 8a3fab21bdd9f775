"""The template's plugins, proven with prunekit.testing, and one run end to end."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from prunekit_template.criteria import ScaleMagnitude
from prunekit_template.datasets import build
from prunekit_template.layer_types import ScaledConv2d, ScaledConvType
from prunekit_template.loggers import MarkdownSteps
from prunekit_template.losses import LogitMSE
from prunekit_template.models import TemplateNet

import prunekit as pk
from prunekit.testing import (
    check_criterion,
    check_dataset,
    check_distillation,
    check_layer_type,
    check_logger,
    check_model,
)

HERE = Path(__file__).parent.parent


def test_layer_type():
    check_layer_type(ScaledConvType(), ScaledConv2d(4, 6), torch.randn(2, 4, 8, 8))


def test_model_prunes_exactly():
    check_model(TemplateNet(width=8), torch.randn(1, 1, 16, 16))


def test_criterion():
    check_criterion(ScaleMagnitude, model=TemplateNet(in_channels=3), example_input=torch.randn(8, 3, 8, 8))


def test_distillation_loss():
    check_distillation(LogitMSE)


def test_dataset():
    check_dataset(build(n_train=4, n_val=2))


def test_logger():
    check_logger(MarkdownSteps)


def test_the_installed_plugins_are_found(plugin_manager):
    assert "template_net" in plugin_manager.names("model")
    assert plugin_manager.layer_type(ScaledConv2d).name == "scaled_conv2d"


def test_end_to_end(tmp_path):
    listing = subprocess.run([sys.executable, "-m", "prunekit", "plugins", "--json"], capture_output=True, text=True)
    names = {row["name"] for row in json.loads(listing.stdout)["plugins"]}
    assert {"template.layers", "template.models", "template.losses", "template.loggers"} <= names
    config = tmp_path / "tiny.yaml"
    config.write_text((HERE / "tiny.yaml").read_text().replace("runs/template-tiny", str(tmp_path / "run")))
    run = subprocess.run([sys.executable, "-m", "prunekit", "run", str(config)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "steps.md").read_text().startswith("| step | MACs % | removed |")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["macs_percent"] <= 50
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    script = (
        f"import torch, prunekit as pk; m = pk.load({str(tmp_path / 'run')!r}); "
        f"torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})"
    )
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    with torch.no_grad():
        here = pk.load(tmp_path / "run")(x)
    assert torch.equal(torch.load(tmp_path / "y.pt"), here)
