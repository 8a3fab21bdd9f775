"""RITnet's DenseNet2D (Chaudhary et al. 2019): five dense down blocks and four dense up blocks
of ``channel_size`` channels, LeakyReLU, dropout, average-pool down, nearest upsampling and
skip concatenation; and the traversal that names its blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.plugin import Spec, Traversal, field, hookimpl


class DownBlock(nn.Module):
    """x → [pool] → conv1; dense concatenations feed the 1×1 → 3×3 pairs; BN at the end."""

    def __init__(self, in_channels: int, channels: int, pool: bool, dropout: float) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2) if pool else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv21 = nn.Conv2d(in_channels + channels, channels, 1)
        self.conv22 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv31 = nn.Conv2d(in_channels + 2 * channels, channels, 1)
        self.conv32 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.LeakyReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        x1 = self.relu(self.dropout1(self.conv1(x)))
        x21 = torch.cat([x, x1], dim=1)
        x22 = self.relu(self.dropout2(self.conv22(self.conv21(x21))))
        x31 = torch.cat([x21, x22], dim=1)
        out = self.relu(self.dropout3(self.conv32(self.conv31(x31))))
        return self.bn(out)


class UpBlock(nn.Module):
    """Nearest ×2 upsampling, concatenation [up, skip], two dense 1×1 → 3×3 pairs."""

    def __init__(self, skip_channels: int, in_channels: int, channels: int, dropout: float) -> None:
        super().__init__()
        joined = skip_channels + in_channels
        self.conv11 = nn.Conv2d(joined, channels, 1)
        self.conv12 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv21 = nn.Conv2d(joined + channels, channels, 1)
        self.conv22 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.LeakyReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = torch.cat([x, skip], dim=1)
        x1 = self.relu(self.dropout1(self.conv12(self.conv11(x))))
        x21 = torch.cat([x, x1], dim=1)
        return self.relu(self.dropout2(self.conv22(self.conv21(x21))))


class DenseNet2D(nn.Module):
    def __init__(self, in_channels: int = 1, n_classes: int = 4, channel_size: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        c = channel_size
        self.down_block1 = DownBlock(in_channels, c, pool=False, dropout=dropout)
        self.down_block2 = DownBlock(c, c, pool=True, dropout=dropout)
        self.down_block3 = DownBlock(c, c, pool=True, dropout=dropout)
        self.down_block4 = DownBlock(c, c, pool=True, dropout=dropout)
        self.down_block5 = DownBlock(c, c, pool=True, dropout=dropout)
        self.up_block1 = UpBlock(c, c, c, dropout=dropout)
        self.up_block2 = UpBlock(c, c, c, dropout=dropout)
        self.up_block3 = UpBlock(c, c, c, dropout=dropout)
        self.up_block4 = UpBlock(c, c, c, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.out_conv1 = nn.Conv2d(c, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.down_block1(x)
        x2 = self.down_block2(x1)
        x3 = self.down_block3(x2)
        x4 = self.down_block4(x3)
        x5 = self.down_block5(x4)
        x6 = self.up_block1(x4, x5)
        x7 = self.up_block2(x3, x6)
        x8 = self.up_block3(x2, x7)
        x9 = self.up_block4(x1, x8)
        return self.out_conv1(self.dropout(x9))


BLOCKS = tuple(f"down_block{i}" for i in range(1, 6)) + tuple(f"up_block{i}" for i in range(1, 5))
TRAVERSAL = Traversal(
    "densenet", blocks=BLOCKS, protected=("out_conv1",), taps=("down_block5", "up_block2", "up_block4")
)


@dataclass
class DenseNetArgs:
    in_channels: int = field(1, min=1)
    n_classes: int = field(4, min=1)
    channel_size: int = field(32, min=1, doc="channels of every block")
    dropout: float = field(0.2, min=0, max=1)


@hookimpl
def prunekit_models() -> list[Spec]:
    return [
        Spec(
            "densenet",
            DenseNet2D,
            "RITnet DenseNet2D; args in_channels, n_classes, channel_size (32), dropout (0.2)",
            DenseNetArgs,
        )
    ]


@hookimpl
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    return TRAVERSAL.matching(model)
