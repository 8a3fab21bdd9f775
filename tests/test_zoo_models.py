"""Models of the common zoos by name, where the package imports (it does not import beside a CPU
build of torch when its wheel was built for CUDA: these tests then skip)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import prunekit as pk
from prunekit.cli import main
from prunekit.run.storage import checkpoints
from prunekit.testing import check_model


def importable(name):
    try:
        return importlib.import_module(name)
    except Exception:
        return None


@pytest.mark.parametrize(
    "package, name, args, size",
    [
        ("torchvision.models", "torchvision.resnet18", {"num_classes": 5}, (1, 3, 64, 64)),
        ("torchvision.models", "torchvision.mobilenet_v3_small", {"num_classes": 5}, (1, 3, 64, 64)),
        ("timm", "timm.resnet18", {"num_classes": 5}, (1, 3, 64, 64)),
        (
            "segmentation_models_pytorch",
            "smp.Unet",
            {"encoder_name": "resnet18", "classes": 3, "in_channels": 1},
            (1, 1, 64, 64),
        ),
    ],
)
def test_a_zoo_model_by_name_prunes_exactly(plugin_manager, package, name, args, size):
    if importable(package) is None:
        pytest.skip(f"{package} does not import here")
    model = plugin_manager.get("model", name, **args)
    assert sum(p.numel() for p in model.parameters()) > 0
    check_model(model, torch.randn(size, generator=torch.Generator().manual_seed(0)), plugins=plugin_manager)


def test_zoo_names_exist_only_where_the_package_imports(plugin_manager):
    names = plugin_manager.names("model")
    for package, prefix in (
        ("torchvision.models", "torchvision."),
        ("timm", "timm."),
        ("segmentation_models_pytorch", "smp."),
    ):
        assert any(n.startswith(prefix) for n in names) == (importable(package) is not None), prefix


ZOO_PACKAGES = ("torchvision.models", "timm", "segmentation_models_pytorch")
ROOT = Path(__file__).parent.parent


def needs(*packages):
    missing = [p for p in packages if importable(p) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} does not import here")


@needs(*ZOO_PACKAGES)
def test_every_built_in_plugin_loads_beside_the_three_zoos_without_a_clash(plugin_manager):
    assert plugin_manager.clashes() == []
    for kind in ("model", "layer_type", "dataset", "criterion", "distillation", "task", "task_loss", "logger"):
        for name in plugin_manager.names(kind):
            plugin_manager.spec(kind, name)  # a clash or a broken registration raises here
    assert {"torchvision.layernorm2d", "timm.layernorm2d"} <= set(plugin_manager.names("layer_type"))


@pytest.mark.parametrize(
    "package, name, arg",
    [
        ("torchvision.models", "torchvision.resnet18", "weights=DEFAULT"),
        ("timm", "timm.resnet18", "pretrained=true"),
        ("segmentation_models_pytorch", "smp.Unet", "encoder_weights=imagenet"),
    ],
)
def test_asking_a_zoo_for_pretrained_weights_offline_is_one_line_naming_model_checkpoint(capsys, package, name, arg):
    if importable(package) is None:
        pytest.skip(f"{package} does not import here")
    assert main(["cost", "--model", name, "--arg", arg, "--input", "1,3,32,32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "downloads nothing at run time" in err[0] and "model.checkpoint" in err[0], err


def save_pretrained(model, path, form):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if form == "safetensors":
        save_file(state, str(path))
    elif form == "lightning":  # a LightningModule holding the net as self.model, with its training state
        state = {f"model.{k}": v for k, v in state.items()} | {"loss.weight": torch.ones(3)}
        torch.save({"epoch": 3, "global_step": 120, "state_dict": state, "optimizer_states": []}, path)
    else:
        torch.save(state, path)


def shapes_run(tmp_path, model, **extra):
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": model,
        "data": {"name": "synthetic_shapes", "args": {"size": [32, 32], "n_train": 16, "n_val": 8, "channels": 3}},
        "train": {"epochs": 0},
        "retrain": "none",
        "finetune": {"epochs": 0},
        "pruning": {"prune_away_percent": 30, "step": {"percent": 30}, "max_drop": None, "class_floor": None},
        **extra,
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "cfg.yaml"


@needs("torchvision.models")
@pytest.mark.parametrize("form", ["pth", "safetensors", "lightning"])
def test_a_run_starts_from_pretrained_weights_in_a_file(tmp_path, capsys, form):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    pretrained = resnet18(num_classes=1000)  # an ImageNet head; the run's has 4 classes
    path = tmp_path / f"resnet18.{'ckpt' if form == 'lightning' else form}"
    save_pretrained(pretrained, path, form)
    model = {"name": "torchvision.resnet18", "args": {"num_classes": 4}, "checkpoint": str(path)}
    assert main(["run", str(shapes_run(tmp_path, model)), "--quiet"]) == 2  # strict: the head differs
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the model (other shapes 2, first fc.bias" in err[0], err
    assert not (tmp_path / "run").exists()
    config = shapes_run(tmp_path, {**model, "strict": False})
    with pytest.warns(
        RuntimeWarning, match=r"loaded 120 of the model's 122 tensors \(.*other shapes 2, first fc\.bias"
    ):
        assert main(["run", str(config), "--quiet"]) == 0
    baseline = load_file(str(tmp_path / "run" / "baseline.safetensors"))
    assert torch.equal(baseline["conv1.weight"], pretrained.conv1.weight)
    assert baseline["fc.weight"].shape == (4, 512)


@pytest.mark.slow
@needs(*ZOO_PACKAGES)
def test_the_zoo_sweep_counts_and_cuts_every_model_exactly():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "zoo_sweep.py")], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "model" not in line]
    assert len(rows) >= 12 and all(" | yes | " in row for row in rows), done.stdout
    assert "0 failed" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "package, model, data",
    [
        (
            "torchvision.models",
            {"name": "torchvision.resnet18", "args": {"num_classes": 4}},
            {"name": "synthetic_shapes", "args": {"size": [32, 32], "n_train": 16, "n_val": 8, "channels": 3}},
        ),
        (
            "segmentation_models_pytorch",
            {"name": "smp.Unet", "args": {"encoder_name": "resnet18", "classes": 4, "in_channels": 1}},
            {"name": "synthetic_eyes", "args": {"size": [32, 64], "n_train": 16, "n_val": 8}},
        ),
    ],
)
def test_a_zoo_model_prunes_from_yaml_and_reloads_in_a_fresh_process(tmp_path, package, model, data):
    if importable(package) is None:
        pytest.skip(f"{package} does not import here")
    config = shapes_run(tmp_path, model, data=data, retrain={"epochs_per_step": 1})
    assert main(["run", str(config), "--quiet"]) == 0
    run_dir = tmp_path / "run"
    last = checkpoints.load_last(run_dir)  # the final model, rebuilt here by another path than pk.load
    rebuilt = pk.apply_plan(pk.get("model", model["name"], **model["args"]), last.plan)
    rebuilt.load_state_dict(last.weights)
    size = (2, 3, 32, 32) if package == "torchvision.models" else (2, 1, 32, 64)
    x = torch.randn(size, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    script = (
        f"import torch, prunekit as pk; torch.set_num_threads({torch.get_num_threads()}); "
        f"m = pk.load({str(run_dir)!r}); torch.save(m(torch.load({str(tmp_path / 'x.pt')!r})), "
        f"{str(tmp_path / 'y.pt')!r})"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        expected = rebuilt.eval()(x)
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)
    assert sum(p.numel() for p in rebuilt.parameters()) < sum(
        p.numel() for p in pk.get("model", model["name"], **model["args"]).parameters()
    )
