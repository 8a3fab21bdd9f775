"""RegNetX for classification (Radosavovic et al. 2020, "Designing Network Design Spaces"): a
stride-2 3×3 stem, stages of residual bottleneck blocks — 1×1, grouped 3×3 (groups of
``group_width`` channels), 1×1, each with BatchNorm, a 1×1 projection where the width or stride
changes — global average pooling and a linear classifier; and its traversal. The defaults are
RegNetX-400MF's stage widths and depths."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.plugin import ConfigError, Spec, Traversal, field, hookimpl


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """x + c(b(a(x))): a 1×1 in, a grouped 3×3 (the stride), a 1×1 out (bottleneck ratio 1)."""

    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.a = conv_bn(cin, cout)
        self.b = conv_bn(cout, cout, 3, stride, groups=cout // group_width)
        self.c = conv_bn(cout, cout, relu=False)
        self.proj = conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.relu(shortcut + self.c(self.b(self.a(x))))


class RegNetX(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 1000,
        widths: tuple[int, ...] = (32, 64, 160, 400),
        depths: tuple[int, ...] = (1, 2, 7, 12),
        group_width: int = 16,
        stem: int = 32,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths or min(depths) < 1:
            raise ConfigError("regnet: needs as many stage widths as depths, each depth >= 1")
        if any(w % group_width for w in widths):
            raise ConfigError(f"regnet: every width must be a multiple of group_width {group_width}, not {widths}")
        self.stem = conv_bn(in_channels, stem, 3, 2)
        stages, cin = [], stem
        for width, depth in zip(widths, depths):
            stages.append(
                nn.Sequential(
                    *(
                        Bottleneck(cin if j == 0 else width, width, 2 if j == 0 else 1, group_width)
                        for j in range(depth)
                    )
                )
            )
            cin = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@dataclass
class RegNetArgs:
    in_channels: int = field(3, min=1)
    n_classes: int = field(1000, min=2)
    widths: list[int] = field([32, 64, 160, 400], doc="channels of each stage (RegNetX-400MF)")
    depths: list[int] = field([1, 2, 7, 12], doc="bottleneck blocks of each stage")
    group_width: int = field(16, min=1, doc="channels per group of the grouped 3×3 convolutions")
    stem: int = field(32, min=1, doc="channels of the stem")

    def check(self, path: str) -> None:
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ConfigError(f"{path}: widths {self.widths} and depths {self.depths} need one entry per stage")
        if any(w < 1 or w % self.group_width for w in self.widths):
            raise ConfigError(f"{path}.widths: {self.widths} must be multiples of group_width {self.group_width}")


def build(
    in_channels: int = 3,
    n_classes: int = 1000,
    widths: list[int] | None = None,
    depths: list[int] | None = None,
    group_width: int = 16,
    stem: int = 32,
) -> RegNetX:
    return RegNetX(
        in_channels, n_classes, tuple(widths or (32, 64, 160, 400)), tuple(depths or (1, 2, 7, 12)), group_width, stem
    )


@hookimpl
def prunekit_models() -> list[Spec]:
    return [
        Spec(
            "regnet",
            build,
            "RegNetX with grouped 3×3 convolutions; defaults are RegNetX-400MF (widths [32, 64, 160, 400], "
            "depths [1, 2, 7, 12], group_width 16)",
            RegNetArgs,
        )
    ]


@hookimpl
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    if not isinstance(model, RegNetX):
        return None
    stages = tuple(f"stages.{i}" for i in range(len(model.stages)))
    return Traversal("regnet", blocks=("stem", *stages), protected=("fc",), taps=stages)
