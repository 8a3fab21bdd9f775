"""Models of the common zoos by name, where the package imports (it does not import beside a CPU
build of torch when its wheel was built for CUDA: these tests then skip)."""

import importlib

import pytest
import torch

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
