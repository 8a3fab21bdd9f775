"""The bilinear U-Net (Ronneberger et al. 2015, in the layout of milesial's Pytorch-UNet) with
the module names IPAD uses (``inc.conv1``, ``down1.conv.conv1`` … ``up4.conv.conv2``, ``outc``),
and the traversal that names its blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.plugin import ConfigError, Spec, Traversal, field, hookimpl

ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True)}


class DoubleConv(nn.Module):
    """(3×3 conv → BN → activation) twice."""

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int | None = None, activation: str = "relu"
    ) -> None:
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.relu1 = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(x)))


class Down(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, activation: str) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.maxpool(x))


class Up(nn.Module):
    """Bilinear ×2 upsampling, padding to the skip's size, concatenation [skip, up], DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, activation: str) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        if dy or dx:
            x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """``activation``: ``relu`` as published, or ``leaky_relu`` (slope 0.1), which keeps very
    narrow (heavily pruned) networks from losing whole classes to units that never fire."""

    def __init__(self, in_channels: int = 1, n_classes: int = 4, width: int = 64, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unet activation: {activation!r} is not allowed; valid: {', '.join(ACTIVATIONS)}")
        w, a = width, activation
        self.inc = DoubleConv(in_channels, w, activation=a)
        self.down1 = Down(w, 2 * w, a)
        self.down2 = Down(2 * w, 4 * w, a)
        self.down3 = Down(4 * w, 8 * w, a)
        self.down4 = Down(8 * w, 8 * w, a)
        self.up1 = Up(16 * w, 4 * w, a)
        self.up2 = Up(8 * w, 2 * w, a)
        self.up3 = Up(4 * w, w, a)
        self.up4 = Up(2 * w, w, a)
        self.outc = nn.Conv2d(w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


BLOCKS = ("inc", "down1.conv", "down2.conv", "down3.conv", "down4.conv", "up1.conv", "up2.conv", "up3.conv", "up4.conv")
TRAVERSAL = Traversal("unet", blocks=BLOCKS, protected=("outc",), taps=("down4.conv", "up2.conv", "up4.conv"))


@dataclass
class UNetArgs:
    in_channels: int = field(1, min=1)
    n_classes: int = field(4, min=1)
    width: int = field(64, min=1, doc="channels of the first block; the widest has 8×")
    activation: Literal["relu", "leaky_relu"] = field("relu", doc="the activation after every convolution")


@hookimpl
def prunekit_models() -> list[Spec]:
    return [Spec("unet", UNet, "bilinear U-Net; args in_channels, n_classes, width (64), activation (relu)", UNetArgs)]


@hookimpl
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    return TRAVERSAL.matching(model)
