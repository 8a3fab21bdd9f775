"""A model of your own, built by a function a config names by import path: nothing to register.

The config beside this file says `model: {factory: "my_nets:build", args: {...}}`; prunekit finds
this module in the config's folder.
"""

from torch import nn


def build(in_channels: int = 1, n_classes: int = 2, width: int = 16) -> nn.Module:
    """A fully convolutional segmentation net: three 3×3 conv blocks and a 1×1 head."""
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(3):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.Conv2d(width, n_classes, 1))
