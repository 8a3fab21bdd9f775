"""The built-in models have the published sizes and the module names IPAD uses."""

import pytest
import torch

import prunekit as pk


def conv_params(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def test_unet_parameter_count_and_seed_table():
    model = pk.get("model", "unet", in_channels=1, n_classes=4, width=64)
    assert sum(p.numel() for p in model.parameters()) == 17_266_436
    modules = dict(model.named_modules())
    own = lambda name: sum(p.numel() for p in modules[name].parameters())
    assert own("inc.conv1") == 640
    assert own("up1.conv.conv1") == 4_719_104
    assert own("up4.conv.conv2") == 36_928
    # the seed's block totals count the block's convolutions only
    convs = lambda block: sum(own(f"{block}.conv{i}") for i in (1, 2))
    assert convs("inc") == 37_568
    assert convs("down1.conv") == 221_440
    assert own("down4.conv.conv1") == conv_params(512, 512)
    assert own("up1.conv.conv2") == conv_params(512, 256)
    assert own("outc") == conv_params(64, 4, k=1)


def test_densenet_parameter_count():
    model = pk.get("model", "densenet", in_channels=1, n_classes=4)
    assert sum(p.numel() for p in model.parameters()) == 248_900
    modules = dict(model.named_modules())
    assert modules["down_block1.conv31"].in_channels == 1 + 2 * 32
    assert modules["up_block4.conv21"].in_channels == 3 * 32


@pytest.mark.parametrize("name, size", [("unet", (50, 70)), ("densenet", (48, 80))])
def test_models_keep_the_input_size(name, size):
    model = pk.get("model", name, n_classes=3, **({"width": 4} if name == "unet" else {"channel_size": 4}))
    out = model.eval()(torch.zeros(2, 1, *size))
    assert out.shape == (2, 3, *size)
