"""The built-in plugins, proven with the same helpers plugin authors use (prunekit.testing)."""

import importlib.util

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.testing import (
    check_criterion,
    check_dataset,
    check_distillation,
    check_layer_type,
    check_logger,
    check_model,
)

LAYERS = {
    "conv1d": (nn.Conv1d(4, 6, 3), (2, 4, 9)),
    "conv2d": (nn.Conv2d(4, 6, 3, padding=1), (2, 4, 8, 8)),
    "conv2d depthwise": (nn.Conv2d(4, 8, 3, groups=4), (2, 4, 8, 8)),
    "conv2d grouped": (nn.Conv2d(6, 8, 3, groups=2), (2, 6, 8, 8)),
    "convtranspose2d grouped": (nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2), (2, 6, 5, 5)),
    "groupnorm": (nn.GroupNorm(3, 6), (2, 6, 4, 4)),
    "conv3d": (nn.Conv3d(3, 4, 2), (1, 3, 4, 4, 4)),
    "convtranspose2d": (nn.ConvTranspose2d(4, 6, 2, stride=2), (2, 4, 5, 5)),
    "convtranspose2d depthwise": (nn.ConvTranspose2d(4, 4, 2, stride=2, groups=4), (2, 4, 5, 5)),
    "linear": (nn.Linear(5, 7), (3, 5)),
    "batchnorm2d": (nn.BatchNorm2d(5), (4, 5, 3, 3)),
    "instancenorm2d": (nn.InstanceNorm2d(5, affine=True), (2, 5, 4, 4)),
    "prelu": (nn.PReLU(5), (2, 5, 3, 3)),
    "leakyrelu": (nn.LeakyReLU(0.1), (2, 5, 3, 3)),
    "dropout": (nn.Dropout(0.3), (2, 5, 3, 3)),
    "maxpool2d": (nn.MaxPool2d(2), (2, 4, 6, 6)),
    "adaptiveavgpool2d": (nn.AdaptiveAvgPool2d(1), (2, 4, 6, 6)),
    "upsample": (nn.Upsample(scale_factor=2, mode="bilinear"), (2, 4, 3, 3)),
    "layernorm": (nn.LayerNorm(6), (2, 3, 6)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_built_in_layer_types(plugin_manager, name):
    module, size = LAYERS[name]
    x = torch.randn(size, generator=torch.Generator().manual_seed(0))
    check_layer_type(plugin_manager.layer_type(type(module)), module, x)


@pytest.mark.parametrize(
    "name", ["activation_deviation", "activation_mean", "bn_scale", "random", "taylor", "weight_norm"]
)
def test_built_in_criteria(plugin_manager, name):
    check_criterion(lambda: plugin_manager.get("criterion", name))


@pytest.mark.parametrize("name", ["hinton", "attention", "fsp", "cwd"])
def test_built_in_distillation_losses(plugin_manager, name):
    check_distillation(lambda: plugin_manager.get("distillation", name))


def test_built_in_datasets(plugin_manager, tmp_path):
    check_dataset(plugin_manager.get("dataset", "synthetic_eyes", size=[32, 48], n_train=4, n_val=2))
    check_dataset(plugin_manager.get("dataset", "synthetic_eyes", size=[32, 48], n_train=4, n_val=2, n_classes=2))


def test_built_in_loggers(plugin_manager):
    check_logger(lambda run_dir: plugin_manager.get("logger", "csv", run_dir=run_dir))
    if importlib.util.find_spec("tensorboard"):
        check_logger(lambda run_dir: plugin_manager.get("logger", "tensorboard", run_dir=run_dir))


@pytest.mark.parametrize("name, args", [("unet", {"width": 4}), ("densenet", {"channel_size": 4})])
def test_built_in_models(plugin_manager, name, args):
    removal = check_model(plugin_manager.get("model", name, **args), torch.randn(1, 1, 32, 32))
    assert len(removal) > 10


def test_a_check_fails_on_a_layer_type_that_lies():
    class Liar(pk.LayerType):  # a convolution declared channel-wise: its 4 inputs are not its 6 outputs
        name, module, kind = "liar", nn.Conv2d, "conv"

        def flow(self, module):
            return pk.Flow.CHANNELWISE

    with pytest.raises(AssertionError, match="declares Conv2d channel-wise, but it turns 4 channels into 6"):
        check_layer_type(Liar(), nn.Conv2d(4, 6, 3), torch.randn(1, 4, 6, 6))
