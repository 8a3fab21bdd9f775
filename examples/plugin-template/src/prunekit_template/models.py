"""A model built from the template's layer, and the traversal that names its blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.plugin import Spec, Traversal, field, hookimpl

from .layer_types import ScaledConv2d


class TemplateNet(nn.Module):
    """Two scaled convolutions with BatchNorm and ReLU, then a 1×1 head: a tiny segmentation net."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(ScaledConv2d(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(ScaledConv2d(width, width), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


@dataclass
class TemplateNetArgs:
    in_channels: int = field(1, min=1)
    n_classes: int = field(2, min=1)
    width: int = field(8, min=2)


TRAVERSAL = Traversal("template_net", blocks=("stem", "body"), protected=("head",), taps=("stem", "body"))


@hookimpl
def prunekit_models() -> list[Spec]:
    return [Spec("template_net", TemplateNet, "two scaled convs, a 1×1 head; args width (8)", TemplateNetArgs)]


@hookimpl
def prunekit_traversal(model: nn.Module) -> Traversal | None:
    return TRAVERSAL if isinstance(model, TemplateNet) else None
