"""A small ResNet for classification (He et al. 2016): a 3×3 stem, stages of basic blocks —
two 3×3 convolutions with BatchNorm and a residual add, a 1×1 projection where the width or
stride changes — global average pooling and a linear classifier; and its traversal."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.plugin import ConfigError, Spec, Traversal, field, hookimpl


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """``widths`` per stage (each after the first halves the resolution), ``depth`` blocks each."""

    def __init__(
        self, in_channels: int = 1, n_classes: int = 4, widths: tuple[int, ...] = (16, 32, 64), depth: int = 1
    ) -> None:
        super().__init__()
        if not widths or depth < 1:
            raise ConfigError("resnet: needs at least one stage width and depth >= 1")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, cin = [], widths[0]
        for i, width in enumerate(widths):
            blocks = [BasicBlock(cin if j == 0 else width, width, 2 if i and j == 0 else 1) for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@dataclass
class ResNetArgs:
    in_channels: int = field(1, min=1)
    n_classes: int = field(4, min=2)
    widths: list[int] = field([16, 32, 64], doc="channels of each stage")
    depth: int = field(1, min=1, doc="basic blocks per stage")

    def check(self, path: str) -> None:
        if not self.widths or min(self.widths) < 1:
            raise ConfigError(f"{path}.widths: {self.widths!r} must be a list of stage widths >= 1")


def build(in_channels: int = 1, n_classes: int = 4, widths: list[int] | None = None, depth: int = 1) -> ResNet:
    return ResNet(in_channels, n_classes, tuple(widths or (16, 32, 64)), depth)


@hookimpl
def prunekit_models() -> list[Spec]:
    return [
        Spec(
            "resnet",
            build,
            "a small ResNet classifier; args in_channels, n_classes, widths ([16, 32, 64]), depth (1)",
            ResNetArgs,
        )
    ]


@hookimpl
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    if not isinstance(model, ResNet):
        return None
    stages = tuple(f"stages.{i}" for i in range(len(model.stages)))
    return Traversal("resnet", blocks=("stem", *stages), protected=("fc",), taps=stages)
